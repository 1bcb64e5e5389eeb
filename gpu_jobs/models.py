"""GPU card presets, jobs and saved launch configurations (SPEC §4.1, §7)."""

from __future__ import annotations

import json
import secrets

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from aladdin.lib.said import SaidReason
from aladdin.workloads import facts
from aladdin.workloads.env import decrypt_value, encrypt_value

from .choices import JobKind, JobState


class EncryptedEnvMixin(models.Model):
    """ENV of a job or configuration: may hold secrets (API keys), so it is stored
    encrypted (Fernet, like workshops' ENV) and only its names are ever shown back."""

    env_encrypted = models.TextField(
        blank=True, help_text=_("Encrypted JSON object of ENV."), verbose_name=_("ENV (encrypted)")
    )
    env_keys = models.JSONField(
        default=list,
        blank=True,
        help_text=_("ENV names (not values)."),
        verbose_name=_("ENV names"),
    )

    class Meta:
        abstract = True

    def set_env(self, env: dict[str, str]) -> None:
        clean = {str(k): str(v) for k, v in (env or {}).items()}
        self.env_encrypted = encrypt_value(json.dumps(clean)) if clean else ""
        self.env_keys = sorted(clean)

    def get_env(self) -> dict[str, str]:
        if not self.env_encrypted:
            return {}
        return json.loads(decrypt_value(self.env_encrypted))


class GpuType(models.Model):
    """A GPU card preset (staff-editable): price, parallelism weight, CPU/memory per card."""

    code = models.SlugField(
        max_length=16, unique=True, help_text=_('"40g" or "80g".'), verbose_name=_("code")
    )
    name = models.CharField(max_length=64, verbose_name=_("name"))
    memory_gb = models.PositiveIntegerField(
        help_text=_("Card memory, in GB."), verbose_name=_("card memory (GB)")
    )
    price_micro_per_hour = models.BigIntegerField(
        help_text=_("Price of one card, in µDCU per hour (1 DCU = 1,000,000 µDCU)."),
        verbose_name=_("price (µDCU per hour)"),
    )
    parallelism_weight = models.PositiveSmallIntegerField(
        help_text=_("Parallelism units one card uses."), verbose_name=_("parallelism weight")
    )
    cpu_millicores = models.PositiveIntegerField(
        help_text=_("CPU per card, in millicores."), verbose_name=_("CPU per card (millicores)")
    )
    memory_mib = models.PositiveIntegerField(
        help_text=_("Memory per card, in MiB."), verbose_name=_("memory per card (MiB)")
    )
    multi_card_allowed = models.BooleanField(
        default=True,
        help_text=_("Whether a worker may have more than one card of this type."),
        verbose_name=_("multi-card jobs allowed"),
    )

    class Meta:
        verbose_name = _("GPU type")
        verbose_name_plural = _("GPU types")
        ordering = ["price_micro_per_hour", "code"]

    def __str__(self) -> str:
        return self.name


class JobQuerySet(models.QuerySet):
    def starting_unstopped(self, job_id: int) -> JobQuerySet:
        """Job ``job_id`` if it is starting and nobody asked it to stop.

        What a start, or its wait for an image or a card, may still write to:
        a stop asked meanwhile (a ban, the student) keeps its own reason.
        """
        return self.filter(pk=job_id, state=JobState.STARTING, stop_requested_at__isnull=True)


class Job(EncryptedEnvMixin, SaidReason):
    """A GPU job: what to run, on which cards, its state and what it was charged.

    ``started_at`` is when its resources were allocated and ``ended_at`` when
    they were released: metering runs between the two (SPEC §4.1).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="jobs",
        verbose_name=_("user"),
    )
    kind = models.CharField(
        max_length=8, choices=JobKind.choices, default=JobKind.RUN, verbose_name=_("kind")
    )
    entry = models.CharField(
        max_length=1024,
        help_text=_("A Python file, a shell script, or a module (with -m)."),
        verbose_name=_("entry"),
    )
    python_module = models.BooleanField(
        default=False, help_text=_("Run the entry as python -m."), verbose_name=_("Python module")
    )
    args = models.JSONField(
        default=list,
        blank=True,
        help_text=_("Arguments, a list of strings."),
        verbose_name=_("arguments"),
    )
    workdir = models.CharField(max_length=1024, blank=True, verbose_name=_("work dir"))
    image = models.CharField(
        max_length=255, blank=True, help_text=_("Image reference."), verbose_name=_("image")
    )
    interpreter = models.CharField(
        max_length=1024,
        blank=True,
        help_text=_("A conda python under /root; wins over the image."),
        verbose_name=_("interpreter"),
    )
    gpu_type = models.ForeignKey(
        GpuType, on_delete=models.PROTECT, related_name="jobs", verbose_name=_("GPU type")
    )
    cards_per_worker = models.PositiveSmallIntegerField(
        default=1, verbose_name=_("cards per worker")
    )
    workers = models.PositiveSmallIntegerField(default=1, verbose_name=_("workers"))
    state = models.CharField(
        max_length=12,
        choices=JobState.choices,
        default=JobState.QUEUED,
        db_index=True,
        verbose_name=_("state"),
    )
    exit_code = models.IntegerField(null=True, blank=True, verbose_name=_("exit code"))
    reason = models.TextField(blank=True, verbose_name=_("reason"))
    # Starting, but its image is still being built (see workshops.Workshop).
    waiting_for_image = models.BooleanField(default=False, verbose_name=_("waiting for image"))
    # Measured inside the workload once it runs (python, torch, cuda, gpus).
    runtime_facts = models.JSONField(default=dict, blank=True, verbose_name=_("what runs"))
    started_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Resources allocated."), verbose_name=_("started at")
    )
    ended_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Resources released."), verbose_name=_("ended at")
    )
    charged_micro = models.BigIntegerField(
        default=0,
        help_text=_("Total charged to the ledger so far (all workers), in µDCU."),
        verbose_name=_("charged (µDCU)"),
    )
    metering_closed = models.BooleanField(
        default=False,
        help_text=_("Every worker's final charge is in the ledger."),
        verbose_name=_("metering closed"),
    )
    gpu_devices = models.JSONField(
        default=list,
        blank=True,
        help_text=_("Cards the cluster assigned (CUDA_VISIBLE_DEVICES)."),
        verbose_name=_("GPU devices"),
    )
    ports = models.JSONField(
        default=list, blank=True, help_text=_("External HTTP ports."), verbose_name=_("ports")
    )
    idempotency_key = models.CharField(max_length=64, blank=True, verbose_name=_("idempotency key"))
    last_seen_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Last time the reconciler saw the workload running."),
        verbose_name=_("last seen at"),
    )
    stop_requested_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("A stop was asked for (by the user or for balance)."),
        verbose_name=_("stop requested at"),
    )
    deleted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Deleted by the user: hidden, logs gone, row kept."),
        verbose_name=_("deleted at"),
    )
    logs_deleted = models.BooleanField(
        default=False,
        help_text=_("The kept output was removed from the cluster."),
        verbose_name=_("logs deleted"),
    )
    logs_expired_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_(
            "When the kept output was removed for age (ALADDIN_JOB_LOG_RETENTION_DAYS "
            "after the end); the job page says so instead of showing an empty log."
        ),
        verbose_name=_("logs expired at"),
    )
    idle_warned_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Its user was warned that its GPUs sit idle (cleared when they work again)."),
        verbose_name=_("idle warning sent at"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    objects = JobQuerySet.as_manager()

    class Meta:
        verbose_name = _("GPU job")
        verbose_name_plural = _("GPU jobs")
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["user", "state"])]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="gpu_jobs_job_unique_idempotency_key",
            )
        ]

    def __str__(self) -> str:
        return self.workload_name

    @property
    def workload_name(self) -> str:
        """Deterministic cluster name (DESIGN rule 7).

        A Run Task's is its worker 0's (``job-<id>-0``): the job's log
        stream, terminal, ports and measured facts are that worker's.
        """
        return self.worker_names[0]

    @property
    def task_log_dir(self) -> str:
        """Where a Run Task's workers write their logs, in the user's volume (SPEC §7)."""
        return f"/root/.aladdin/tasks/{self.pk}"

    @property
    def worker_names(self) -> list[str]:
        """Every workload of the job, by worker index: ``job-<id>`` for the one-worker
        kinds, ``job-<id>-<index>`` for each worker of a Run Task (JobWorker)."""
        if self.kind == JobKind.TASK:
            return [f"job-{self.pk}-{index}" for index in range(self.workers)]
        return [f"job-{self.pk}"]

    @property
    def runtime_summary(self) -> str:
        """What runs, measured in the job at its start ("Python 3.11.7 · torch …")."""
        return facts.describe(self.runtime_facts)

    @property
    def display_name(self) -> str:
        return self.entry.rsplit("/", 1)[-1] or self.workload_name

    @property
    def cards(self) -> int:
        return self.cards_per_worker * self.workers

    @property
    def parallelism(self) -> int:
        return self.cards * self.gpu_type.parallelism_weight


class JobWorker(models.Model):
    """One worker of a job: its own allocation window, metered on its own (SPEC §4.1).

    A Run Task's workers (``job-<id>-<index>``, pods of an indexed Job on
    Kubernetes) may get and release their cards at different times; each is
    billed from its allocation to its release, with ledger keys
    ``job-<id>:w<index>:<minute>`` and ``job-<id>:w<index>:end``. GPU Run and
    Run Shell have one worker, whose window is the job's. ``Job.charged_micro``
    is the sum of its workers' and moves in the same transaction.
    """

    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="worker_rows", verbose_name=_("job")
    )
    index = models.PositiveSmallIntegerField(default=0, verbose_name=_("index"))
    started_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Cards allocated."), verbose_name=_("started at")
    )
    ended_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Cards released."), verbose_name=_("ended at")
    )
    charged_micro = models.BigIntegerField(
        default=0,
        help_text=_("Charged to the ledger for this worker, in µDCU."),
        verbose_name=_("charged (µDCU)"),
    )
    metering_closed = models.BooleanField(
        default=False,
        help_text=_("The final charge (to ended_at) is in the ledger."),
        verbose_name=_("metering closed"),
    )

    class Meta:
        verbose_name = _("job worker")
        verbose_name_plural = _("job workers")
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="gpu_jobs_worker_unique_index")
        ]
        indexes = [models.Index(fields=["metering_closed", "started_at"])]

    def __str__(self) -> str:
        return f"job-{self.job_id}:w{self.index}"


def new_port_token() -> str:
    """128 random bits as 32 hex digits: unguessable, and a valid DNS label (the URL's host)."""
    return secrets.token_hex(16)


class JobPort(models.Model):
    """A port of a job served to the browser (SPEC §7 "External access").

    Its URL is ``<token>.<PORTS_DOMAIN>``, served by the port proxy
    (``manage.py ports_proxy``), a different site from the portal. It
    answers while the port is not removed and the job runs; a removed and
    re-added port gets a new token, so an old URL never comes back to life.
    """

    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="exposed_ports", verbose_name=_("job")
    )
    port = models.PositiveIntegerField(verbose_name=_("port"))
    token = models.CharField(
        max_length=32, unique=True, default=new_port_token, editable=False, verbose_name=_("token")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    removed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("removed at"))

    class Meta:
        verbose_name = _("job port")
        verbose_name_plural = _("job ports")
        ordering = ["job", "port"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "port"],
                condition=models.Q(removed_at__isnull=True),
                name="gpu_jobs_port_open_once",
            )
        ]

    def __str__(self) -> str:
        return f"job-{self.job_id}:{self.port}"


class JobConfiguration(EncryptedEnvMixin):
    """A saved set of launch parameters ("Save as configuration"), named per user."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="job_configurations",
        verbose_name=_("user"),
    )
    name = models.CharField(max_length=100, verbose_name=_("name"))
    kind = models.CharField(
        max_length=8, choices=JobKind.choices, default=JobKind.RUN, verbose_name=_("kind")
    )
    entry = models.CharField(max_length=1024, blank=True, verbose_name=_("entry"))
    python_module = models.BooleanField(default=False, verbose_name=_("Python module"))
    args = models.JSONField(default=list, blank=True, verbose_name=_("arguments"))
    workdir = models.CharField(max_length=1024, blank=True, verbose_name=_("work dir"))
    image = models.CharField(max_length=255, blank=True, verbose_name=_("image"))
    interpreter = models.CharField(max_length=1024, blank=True, verbose_name=_("interpreter"))
    gpu_type = models.ForeignKey(
        GpuType,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("GPU type"),
    )
    cards_per_worker = models.PositiveSmallIntegerField(
        default=1, verbose_name=_("cards per worker")
    )
    workers = models.PositiveSmallIntegerField(default=1, verbose_name=_("workers"))
    ports = models.JSONField(
        default=list, blank=True, help_text=_("External HTTP ports."), verbose_name=_("ports")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    # What a configuration holds (the API and the admin show these; never env values).
    SHOWN_FIELDS = (
        "name", "kind", "entry", "python_module", "args", "env_keys", "workdir", "image",
        "interpreter", "gpu_type", "cards_per_worker", "workers", "ports", "created_at",
        "updated_at",
    )  # fmt: skip

    class Meta:
        verbose_name = _("job configuration")
        verbose_name_plural = _("job configurations")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="gpu_jobs_config_unique_name")
        ]

    def __str__(self) -> str:
        return self.name
