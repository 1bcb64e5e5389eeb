"""The tables every workload app reads: the image catalog and the platform's variables.

Their code lives here because workshops and GPU jobs both read them (jobs
validate an image against the catalog; every workload gets the platform
variables), and a sibling app may not import the other. Their tables stay
the workshops app's (``app_label``): migrations, admin pages, content types
and staff permissions are unchanged, and ``workshops.models`` imports them
so Django registers them with that app. Moving the label would buy nothing
but a state-only migration and new admin URLs.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .env import env_key


class Image(models.Model):
    """A catalog image users pick for workshops (and jobs): ``name:tag``."""

    name = models.CharField(_("name"), max_length=80)
    tag = models.CharField(_("tag"), max_length=80)
    description = models.TextField(_("contents"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    sort = models.PositiveIntegerField(_("sort"), default=0)

    class Meta:
        app_label = "workshops"
        ordering = ["sort", "pk"]
        constraints = [models.UniqueConstraint(fields=["name", "tag"], name="image_name_tag")]
        verbose_name = _("image")
        verbose_name_plural = _("images")

    def __str__(self) -> str:
        return self.ref

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"


class PlatformEnvVar(models.Model):
    """A variable injected into every workload (SPEC §6 "academic acceleration")."""

    key = models.CharField(_("key"), max_length=128, unique=True, validators=[env_key])
    value = models.TextField(_("value"), blank=True)
    description = models.CharField(_("description"), max_length=200, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    sort = models.PositiveIntegerField(_("sort"), default=0)

    class Meta:
        app_label = "workshops"
        ordering = ["sort", "key"]
        verbose_name = _("platform environment variable")
        verbose_name_plural = _("platform environment variables")

    def __str__(self) -> str:
        return self.key
