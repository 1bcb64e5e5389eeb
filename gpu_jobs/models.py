"""GPU card presets, jobs and saved launch configurations (SPEC §4.1, §7)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .choices import JobKind, JobState


class GpuType(models.Model):
    """A GPU card preset (staff-editable): price, parallelism weight, CPU/memory per card."""

    code = models.SlugField(max_length=16, unique=True, help_text=_('"40g" or "80g".'))
    name = models.CharField(max_length=64)
    memory_gb = models.PositiveIntegerField(help_text=_("Card memory, in GB."))
    price_micro_per_hour = models.BigIntegerField(
        help_text=_("Price of one card, in µDCU per hour (1 DCU = 1,000,000 µDCU).")
    )
    parallelism_weight = models.PositiveSmallIntegerField(
        help_text=_("Parallelism units one card uses.")
    )
    cpu_millicores = models.PositiveIntegerField(help_text=_("CPU per card, in millicores."))
    memory_mib = models.PositiveIntegerField(help_text=_("Memory per card, in MiB."))
    multi_card_allowed = models.BooleanField(
        default=True, help_text=_("Whether a worker may have more than one card of this type.")
    )

    class Meta:
        ordering = ["price_micro_per_hour", "code"]

    def __str__(self) -> str:
        return self.name


class Job(models.Model):
    """A GPU job: what to run, on which cards, its state and what it was charged.

    ``started_at`` is when its resources were allocated and ``ended_at`` when
    they were released: metering runs between the two (SPEC §4.1).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs"
    )
    kind = models.CharField(max_length=8, choices=JobKind.choices, default=JobKind.RUN)
    entry = models.CharField(
        max_length=1024, help_text=_("A Python file, a shell script, or a module (with -m).")
    )
    python_module = models.BooleanField(default=False, help_text=_("Run the entry as python -m."))
    args = models.JSONField(default=list, blank=True, help_text=_("Arguments, a list of strings."))
    # Plain JSON for now; it may hold secrets, so it is never serialized back
    # to clients (only its keys) — to be encrypted like workshops' ENV later.
    env = models.JSONField(default=dict, blank=True)
    workdir = models.CharField(max_length=1024, blank=True)
    image = models.CharField(max_length=255, blank=True, help_text=_("Image reference."))
    interpreter = models.CharField(
        max_length=1024, blank=True, help_text=_("A conda python under /root; wins over the image.")
    )
    gpu_type = models.ForeignKey(GpuType, on_delete=models.PROTECT, related_name="jobs")
    cards_per_worker = models.PositiveSmallIntegerField(default=1)
    workers = models.PositiveSmallIntegerField(default=1)
    state = models.CharField(
        max_length=12, choices=JobState.choices, default=JobState.QUEUED, db_index=True
    )
    exit_code = models.IntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True, help_text=_("Resources allocated."))
    ended_at = models.DateTimeField(null=True, blank=True, help_text=_("Resources released."))
    charged_micro = models.BigIntegerField(
        default=0, help_text=_("Total charged to the ledger so far, in µDCU.")
    )
    metering_closed = models.BooleanField(
        default=False, help_text=_("The final charge (to ended_at) is in the ledger.")
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["user", "state"])]

    def __str__(self) -> str:
        return f"job-{self.pk}"

    @property
    def cards(self) -> int:
        return self.cards_per_worker * self.workers

    @property
    def parallelism(self) -> int:
        return self.cards * self.gpu_type.parallelism_weight


class JobConfiguration(models.Model):
    """A saved set of launch parameters ("Save as configuration"), named per user."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="job_configurations"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=8, choices=JobKind.choices, default=JobKind.RUN)
    entry = models.CharField(max_length=1024, blank=True)
    python_module = models.BooleanField(default=False)
    args = models.JSONField(default=list, blank=True)
    # Same caveat as Job.env: never exposed back in full.
    env = models.JSONField(default=dict, blank=True)
    workdir = models.CharField(max_length=1024, blank=True)
    image = models.CharField(max_length=255, blank=True)
    interpreter = models.CharField(max_length=1024, blank=True)
    gpu_type = models.ForeignKey(
        GpuType, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    cards_per_worker = models.PositiveSmallIntegerField(default=1)
    workers = models.PositiveSmallIntegerField(default=1)
    ports = models.JSONField(default=list, blank=True, help_text=_("External HTTP ports."))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="gpu_jobs_config_unique_name")
        ]

    def __str__(self) -> str:
        return self.name
