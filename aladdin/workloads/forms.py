"""The image picker both launch forms use (issue 14): what cannot run is shown, disabled, with why."""

from __future__ import annotations

from typing import Any

from django import forms

from .models import Image


def image_label(image: Image) -> str:
    """ "torch:2.6.0-cu124 — unavailable: <reason>"; the bare ref when nothing needs saying."""
    note = image.availability()
    return f"{image.ref} — {note}" if note else image.ref


class ImageSelect(forms.Select):
    """A <select> whose options for images that cannot run are disabled.

    ``disabled`` holds the option values (pk or ref, as the field submits)
    to disable. The service refuses them anyway (ImageUnavailable): this
    only spares the student a round trip and shows the reason up front.
    """

    def __init__(self, *args: Any, disabled: set[str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.disabled = disabled or set()

    def create_option(
        self,
        name: str,
        value: Any,
        label: Any,
        selected: Any,
        index: int,
        subindex: int | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        if str(value) in self.disabled:
            option["attrs"]["disabled"] = True
        return option


def unlaunchable(images: list[Image], *, by: str) -> set[str]:
    """The option values (``by`` "pk" or "ref") of images a workload cannot be started on."""
    return {str(getattr(image, by)) for image in images if not image.launchable}
