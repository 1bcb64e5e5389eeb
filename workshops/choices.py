"""Choices of the workshops app."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class WorkshopState(models.TextChoices):
    CREATING = "creating", _("Workshop is waiting for creating.")
    RUNNING = "running", _("Workshop is created.")
    STOPPING = "stopping", _("Stopping")
    STOPPED = "stopped", _("Stopped")
    FAILED = "failed", _("Failed")
    DELETING = "deleting", _("Deleting")


# States whose resources count against the quota, and states that change by themselves.
ACTIVE_STATES = (WorkshopState.CREATING, WorkshopState.RUNNING)
TRANSITIONAL_STATES = (WorkshopState.CREATING, WorkshopState.STOPPING, WorkshopState.DELETING)

WORKLOAD_KIND = "workshop"
