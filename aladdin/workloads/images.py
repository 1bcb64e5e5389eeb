"""The image catalog against the backend: builds, availability, refusals (SPEC §9, issue 14).

The driver knows where each recipe stands on its host
(:meth:`~aladdin.cluster.base.ClusterDriver.image_status`); the catalog's
rows keep a copy (``Image.build_*``) so that pickers, pages and the API
show it without asking the backend on every request. :func:`images_sync`
(beat, every ``IMAGES_SYNC_SECONDS``) refreshes the copy and starts the
builds that may start on their own; a workload's start refreshes its own
image first, so it never acts on a stale copy.

What runs is what the image says, or nothing runs: a workload on an image
that is unavailable or whose build failed is refused with the reason
(:class:`ImageUnavailable`); one on an image still building waits in its
starting state, and its app's reconciler starts it once the build is over.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone

from aladdin.cluster.base import ClusterDriver, DriverError
from aladdin.cluster.images import BuildState, ImageState
from aladdin.lib import said
from aladdin.lib.errors import DomainError
from aladdin.lib.said import Said

from . import reasons  # noqa: F401 - defines the messages below
from .models import Image

log = logging.getLogger(__name__)


class ImageUnavailable(DomainError):  # noqa: N818 - reads as the condition
    """The image cannot run on this platform now; the message says why and what to do."""

    error_code = "image_unavailable"

    def __init__(self, image: Image):
        self.image = image
        failed = image.build_state == BuildState.FAILED
        # What a workload that needed it keeps as its reason (read in its reader's language).
        self.said = Said(
            "workload.image_failed" if failed else "workload.image_unavailable",
            {"image": image.ref, "reason": image.build_reason},
        )
        super().__init__(str(self.said))


def auto_builds(image: Image) -> bool:
    """Whether the platform builds ``image`` without being asked (``IMAGES_AUTO_BUILD``).

    "plain" (the default): images without CUDA or conda, which build from
    the host's Pythons and a package index in a minute or two; the CUDA
    images download gigabytes, so they build when first used or when an
    operator asks (``manage.py build_images``). "all", or "none".
    """
    policy = settings.IMAGES_AUTO_BUILD
    if policy == "all":
        return True
    if policy == "plain":
        return not image.cuda and not image.conda
    return False


def image_record(image: Image, state: ImageState) -> Image:
    """Copy the backend's ``state`` onto the row (only the build fields; staff edits are kept)."""
    image.build_state = state.state
    image.build_progress = max(0, min(100, int(state.progress)))
    image.build_step = state.step[:200]
    image.build_step_id = state.step_id if said.defined(state.step_id) else ""
    image.build_step_params = state.step_params if image.build_step_id else {}
    image.build_reason = state.reason
    image.cpu_only = state.cpu_only
    image.build_facts = state.facts
    image.build_key = state.key
    image.build_checked_at = timezone.now()
    image.save(update_fields=Image.BUILD_FIELDS)
    return image


def image_refresh(*, image: Image, driver: ClusterDriver) -> Image:
    """Ask the backend where ``image`` stands and record it. Raises DriverError."""
    return image_record(image, driver.image_status(image.recipe()))


def image_build(*, image: Image, driver: ClusterDriver) -> Image:
    """Start building ``image`` (a retry if its last build failed) and record its state."""
    return image_record(image, driver.build_image(image.recipe()))


def images_sync(*, driver: ClusterDriver) -> dict[str, int]:
    """Refresh every active image and start the builds that start on their own.

    Returns how many images are in each state. One image the backend cannot
    answer for is logged and skipped: the rest are still brought up to date.
    """
    counts: dict[str, int] = {}
    for image in Image.objects.filter(is_active=True):
        try:
            image = image_refresh(image=image, driver=driver)
            if image.build_state == BuildState.MISSING and auto_builds(image):
                image = image_build(image=image, driver=driver)
        except DriverError:
            log.warning("could not bring image %s up to date", image.ref, exc_info=True)
            continue
        counts[image.build_state] = counts.get(image.build_state, 0) + 1
    return counts


def image_check_launchable(image: Image) -> None:
    """Refuse a new workload on an image that cannot run here (the row's last known state)."""
    if not image.is_active:
        raise ImageUnavailable(image)
    if not image.launchable:
        raise ImageUnavailable(image)


def image_prepare(*, image: Image, driver: ClusterDriver) -> Image:
    """Right before a start: the image's fresh state, its build started if it has none.

    The caller starts the workload if the image is ready, waits if it is
    building (``build_state`` building), and fails the workload with
    :class:`ImageUnavailable`'s message otherwise.
    """
    image = image_refresh(image=image, driver=driver)
    if image.build_state == BuildState.MISSING:
        image = image_build(image=image, driver=driver)
    return image


def waiting_reason(image: Image) -> Said:
    """What a workload waiting for ``image`` says while it waits."""
    return Said(
        "workload.image_waiting",
        {"image": image.ref, "progress": image.build_progress, "step": image.build_step_said},
    )


def image_for_ref(ref: str) -> Image | None:
    """The catalog row of "name:tag", active or not (None if there is none)."""
    name, _sep, tag = ref.partition(":")
    return Image.objects.filter(name=name, tag=tag).first()
