"""Models of the ops app."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class TaskHeartbeat(models.Model):
    """When one periodic Celery task last finished, with or without error (one row per task).

    Written after every run of a task in ``CELERY_BEAT_SCHEDULE`` (see
    :mod:`aladdin.ops.receivers`) and read by /metrics as the beat lag. In
    the database, not Redis, because the bundled Redis keeps nothing across
    a restart and a once-a-day task (the nightly storage charge) would then
    have no known last run for up to a day.
    """

    task = models.CharField(max_length=200, unique=True, help_text=_("Celery task name."))
    last_success_at = models.DateTimeField(
        null=True, blank=True, help_text=_("The last run that returned without an error.")
    )
    last_failure_at = models.DateTimeField(
        null=True, blank=True, help_text=_("The last run that raised.")
    )
    last_error = models.TextField(blank=True, help_text=_("What the last failed run raised."))

    class Meta:
        ordering = ["task"]
        verbose_name = _("task heartbeat")
        verbose_name_plural = _("task heartbeats")

    def __str__(self) -> str:
        return self.task
