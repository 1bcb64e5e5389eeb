"""Reads of the workshops app."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Image, ResourcePreset, Workshop


def workshops_for(user) -> QuerySet[Workshop]:
    return Workshop.objects.filter(user=user).select_related("image", "preset")


def active_images() -> QuerySet[Image]:
    return Image.objects.filter(is_active=True)


def active_presets() -> QuerySet[ResourcePreset]:
    return ResourcePreset.objects.filter(is_active=True)
