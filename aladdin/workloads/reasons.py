"""The texts of the reasons the cluster reports (ids from aladdin.cluster.reasons), and the ones
jobs and workshops share (staff stops, disk stops, bans, images).

Loaded by the workloads app, so every process can render them.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext

from aladdin.cluster.base import WorkloadStatus
from aladdin.lib.said import BYTES, REASON, Reason, Said, define, defined


def _gib(mib: Any) -> str:
    mib = int(mib)
    if mib < 1024:
        return f"{mib} MiB"
    return f"{mib / 1024:.2f}".rstrip("0").rstrip(".") + " GiB"


define("workload.exit_code", _("exited with code %(code)s"))
define("workload.signal", _("killed by %(signal)s"))
define("workload.oom", _("out of memory (limit %(limit_mib)s)"), limit_mib=_gib)
define("workload.stopped", _("stopped"))
define("workload.agent_stopped", _("stopped: the compute agent was shut down"))
define(
    "workload.agent_died",
    _("the compute agent ended unexpectedly and the workload ended with it"),
)
# ``detail`` is the host's own error (English): the portal has no words for it.
define("workload.not_started", _("could not start: %(detail)s"))
define("workload.image_not_ready", _("its image cannot be used: %(detail)s"))

define("workload.stopped_by_support", _("Stopped by support: %(reason)s"))
define(
    "workload.stopped_banned",
    _("Stopped: the account was banned for breaking the platform's rules."),
)
define(
    "workload.stopped_disk_full",
    _(
        "Stopped: the server's disk is almost full (%(free)s free, reserve %(reserve)s) and "
        "your storage is %(excess)s over your allowance of %(allowed)s. Delete files or "
        "expand your storage, then start it again."
    ),
    free=BYTES,
    reserve=BYTES,
    excess=BYTES,
    allowed=BYTES,
)


def _step(step: Any) -> str:
    # The build's step: a message (image.step.*) or, in rows written before
    # steps had ids, the agent's English text.
    text = REASON(step)
    # Translated: Chinese puts a full-width colon, with no space, after "5%".
    return pgettext("after a build's percentage", ": %(step)s") % {"step": text} if text else ""


define(
    "workload.image_waiting",
    _("Waiting for the image %(image)s to be built (%(progress)s%%%(step)s)."),
    step=_step,
)
# What a build is doing (aladdin.cluster.images.BUILD_STEPS, the same ids).
define("image.step.waiting", _("waiting for another build to finish"))
define("image.step.copying_python", _("copying Python %(version)s"))
define("image.step.installing_pip", _("installing pip"))
define("image.step.downloading", _("downloading %(package)s (%(index)s of %(count)s)"))
define("image.step.installing_packages", _("installing %(count)s packages"))
define("image.step.installing_conda", _("installing conda"))
define("image.step.verifying", _("checking the installed versions"))
define(
    "workload.image_failed",
    _(
        "The image %(image)s cannot be used: its build failed (%(reason)s). "
        "Choose another image; support has been told."
    ),
)
define(
    "workload.image_unavailable",
    _("The image %(image)s is not available on this platform: %(reason)s. Choose another image."),
)
define("workload.image_not_in_catalog", _("%(image)s is not in the image catalog."))


def from_status(status: WorkloadStatus, default: Reason = "") -> Reason:
    """The reason a backend reported, as a message where it sent an id this portal knows."""
    if status.reason_id and defined(status.reason_id):
        return Said(status.reason_id, status.reason_params)
    return status.reason or default
