"""Images, resource presets, platform environment defaults, workshops and their events."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from aladdin.lib.said import SaidReason
from aladdin.workloads import facts
from aladdin.workloads.env import decrypt_value, env_key

# The catalog and the platform variables are shared with GPU jobs; imported
# here so that Django registers them with this app (their app_label).
from aladdin.workloads.models import Image, PlatformEnvVar  # noqa: F401

from .choices import WorkshopState

dns_label = RegexValidator(
    r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$",
    _("Use 1 to 40 lowercase letters, digits or '-', starting and ending with a letter or digit."),
)


class ResourcePreset(models.Model):
    """A CPU/memory size a workshop can have; staff-editable."""

    name = models.CharField(_("name"), max_length=40, unique=True)
    cpu_millicores = models.PositiveIntegerField(_("CPU (millicores)"))
    memory_mib = models.PositiveIntegerField(_("memory (MiB)"))
    recommended = models.BooleanField(_("recommended"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    sort = models.PositiveIntegerField(_("sort"), default=0)

    class Meta:
        ordering = ["sort", "pk"]
        verbose_name = _("resource preset")
        verbose_name_plural = _("resource presets")

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        cpu = self.cpu_millicores / 1000
        mem = self.memory_mib / 1024
        return f"CPU:{cpu:g} MEM:{mem:g}G"


class Workshop(SaidReason):
    """A user's persistent CPU dev environment; workload ``ws-<id>``."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="workshops",
        verbose_name=_("user"),
    )
    name = models.CharField(_("name"), max_length=40, validators=[dns_label])
    image = models.ForeignKey(Image, on_delete=models.PROTECT, verbose_name=_("image"))
    preset = models.ForeignKey(
        ResourcePreset, on_delete=models.PROTECT, verbose_name=_("resources")
    )
    # Requested resources (copied from the preset when chosen) and the ones in
    # force, copied at start: an edit applies on the next start (SPEC §6).
    cpu_millicores = models.PositiveIntegerField(_("CPU (millicores)"))
    memory_mib = models.PositiveIntegerField(_("memory (MiB)"))
    applied_cpu_millicores = models.PositiveIntegerField(
        default=0, verbose_name=_("applied CPU (millicores)")
    )
    applied_memory_mib = models.PositiveIntegerField(
        default=0, verbose_name=_("applied memory (MiB)")
    )
    state = models.CharField(
        _("state"), max_length=16, choices=WorkshopState.choices, default=WorkshopState.CREATING
    )
    reason = models.TextField(_("reason"), blank=True)
    # Creating, but its image is still being built: the reconciler starts it
    # once the build is over (or fails it with the image's reason).
    waiting_for_image = models.BooleanField(default=False, verbose_name=_("waiting for image"))
    # Measured inside the workload at its last start (python, torch, cuda, gpus).
    runtime_facts = models.JSONField(_("what runs"), default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))
    started_at = models.DateTimeField(null=True, blank=True, verbose_name=_("started at"))
    stopped_at = models.DateTimeField(null=True, blank=True, verbose_name=_("stopped at"))
    idle_warned_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Its user was warned that it sits idle (cleared when it works again)."),
        verbose_name=_("idle warning sent at"),
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="workshop_user_name")]
        verbose_name = _("workshop")
        verbose_name_plural = _("workshops")

    def __str__(self) -> str:
        return self.name

    @property
    def workload_name(self) -> str:
        return f"ws-{self.pk}"

    @property
    def host_alias(self) -> str:
        return f"{self.name}.bj1"

    @property
    def runtime_summary(self) -> str:
        """What runs, as measured at the last start ("Python 3.11.7 · torch …")."""
        return facts.describe(self.runtime_facts)

    @property
    def is_transitional(self) -> bool:
        return self.state in {
            WorkshopState.CREATING,
            WorkshopState.STOPPING,
            WorkshopState.DELETING,
        }

    @property
    def applied_label(self) -> str:
        """The size running now, as presets are labelled (CPU:2 MEM:4G)."""
        cpu = self.applied_cpu_millicores / 1000
        mem = self.applied_memory_mib / 1024
        return f"CPU:{cpu:g} MEM:{mem:g}G"

    @property
    def resources_pending(self) -> bool:
        """An edit of resources not yet applied (applies on restart)."""
        return self.state == WorkshopState.RUNNING and (
            self.cpu_millicores != self.applied_cpu_millicores
            or self.memory_mib != self.applied_memory_mib
        )


class WorkshopEnvVar(models.Model):
    """A user's variable for one workshop; the value is encrypted and never shown back."""

    workshop = models.ForeignKey(
        Workshop, on_delete=models.CASCADE, related_name="env_vars", verbose_name=_("workshop")
    )
    key = models.CharField(_("key"), max_length=128, validators=[env_key])
    value_encrypted = models.TextField(verbose_name=_("value (encrypted)"))

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["workshop", "key"], name="workshop_env_key")]
        verbose_name = _("workshop environment variable")
        verbose_name_plural = _("workshop environment variables")

    def __str__(self) -> str:
        return self.key

    @property
    def masked(self) -> str:
        return "••••"

    def plaintext(self) -> str:
        return decrypt_value(self.value_encrypted)


class WorkshopEvent(models.Model):
    """Every change of a workshop, and what the reconciler did to orphans."""

    workshop = models.ForeignKey(
        Workshop,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="events",
        verbose_name=_("workshop"),
    )
    name = models.CharField(_("workload"), max_length=80)
    kind = models.CharField(_("kind"), max_length=40)
    message = models.TextField(_("message"), blank=True)
    created_at = models.DateTimeField(
        auto_now_add=True, db_index=True, verbose_name=_("created at")
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("workshop event")
        verbose_name_plural = _("workshop events")

    def __str__(self) -> str:
        return f"{self.name} {self.kind}"


class SSHKey(models.Model):
    """A user's public key for the SSH gateway (SPEC §6, issue 13).

    Revoking keeps the row (who had which key, until when) with
    ``revoked_at`` set; only active keys count towards the limit and the
    uniqueness of fingerprints, so a revoked key may be added again. The
    gateway looks keys up by ``fingerprint`` (SHA256, as OpenSSH prints it).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="ssh_keys",
        verbose_name=_("user"),
    )
    name = models.CharField(_("name"), max_length=100, blank=True)
    algorithm = models.CharField(_("type"), max_length=40)
    bits = models.PositiveIntegerField(_("bits"))
    # The key as one OpenSSH line, "type base64 comment".
    public_key = models.TextField(_("public key"))
    fingerprint = models.CharField(_("fingerprint"), max_length=80, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # "A key is registered to one account only": among active keys.
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=models.Q(revoked_at__isnull=True),
                name="sshkey_active_fingerprint",
            )
        ]
        verbose_name = _("SSH key")
        verbose_name_plural = _("SSH keys")

    def __str__(self) -> str:
        return f"{self.name or self.algorithm} {self.fingerprint}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
