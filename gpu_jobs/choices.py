"""Choices of the gpu_jobs app (SPEC §7)."""

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class JobKind(models.TextChoices):
    RUN = "run", _("GPU Run")
    DEBUG = "debug", _("GPU Debug")
    SHELL = "shell", _("Run Shell")
    TASK = "task", _("Run Task")


class JobState(models.TextChoices):
    # A context of its own: billing's "Queued" (a period not yet in effect) reads differently.
    QUEUED = "queued", pgettext_lazy("job state", "Queued")
    STARTING = "starting", _("Starting")
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    STOPPED = "stopped", _("Stopped")


# Jobs that hold (or are about to hold) cards, CPU and memory.
ACTIVE_STATES = (JobState.STARTING, JobState.RUNNING)
ENDED_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED)
