"""Images, resource presets, platform environment defaults, workshops and their events."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from .choices import WorkshopState

dns_label = RegexValidator(
    r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$",
    _("Use 1 to 40 lowercase letters, digits or '-', starting and ending with a letter or digit."),
)
env_key = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]*$",
    _("A variable name is letters, digits and '_', not starting with a digit."),
)


def _fernet() -> Fernet:
    # A key derived from SECRET_KEY: rotating SECRET_KEY makes stored values unreadable,
    # which the env var admin surfaces as "(unreadable)" rather than crashing.
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"aladdin.workshops.env"
    ).derive(settings.SECRET_KEY.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(raw))


def encrypt_value(plain: str) -> str:
    return _fernet().encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt_value(token: str) -> str:
    return _fernet().decrypt(token.encode("ascii")).decode("utf-8")


class Image(models.Model):
    """A catalog image users pick for workshops (and jobs): ``name:tag``."""

    name = models.CharField(_("name"), max_length=80)
    tag = models.CharField(_("tag"), max_length=80)
    description = models.TextField(_("contents"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    sort = models.PositiveIntegerField(_("sort"), default=0)

    class Meta:
        ordering = ["sort", "pk"]
        constraints = [models.UniqueConstraint(fields=["name", "tag"], name="image_name_tag")]
        verbose_name = _("image")
        verbose_name_plural = _("images")

    def __str__(self) -> str:
        return self.ref

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"


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


class PlatformEnvVar(models.Model):
    """A variable injected into every workload (SPEC §6 "academic acceleration")."""

    key = models.CharField(_("key"), max_length=128, unique=True, validators=[env_key])
    value = models.TextField(_("value"), blank=True)
    description = models.CharField(_("description"), max_length=200, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    sort = models.PositiveIntegerField(_("sort"), default=0)

    class Meta:
        ordering = ["sort", "key"]
        verbose_name = _("platform environment variable")
        verbose_name_plural = _("platform environment variables")

    def __str__(self) -> str:
        return self.key


class Workshop(models.Model):
    """A user's persistent CPU dev environment; workload ``ws-<id>``."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workshops"
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
    applied_cpu_millicores = models.PositiveIntegerField(default=0)
    applied_memory_mib = models.PositiveIntegerField(default=0)
    state = models.CharField(
        _("state"), max_length=16, choices=WorkshopState.choices, default=WorkshopState.CREATING
    )
    reason = models.TextField(_("reason"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

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
    def is_transitional(self) -> bool:
        return self.state in {
            WorkshopState.CREATING,
            WorkshopState.STOPPING,
            WorkshopState.DELETING,
        }

    @property
    def resources_pending(self) -> bool:
        """An edit of resources not yet applied (applies on restart)."""
        return self.state == WorkshopState.RUNNING and (
            self.cpu_millicores != self.applied_cpu_millicores
            or self.memory_mib != self.applied_memory_mib
        )


class WorkshopEnvVar(models.Model):
    """A user's variable for one workshop; the value is encrypted and never shown back."""

    workshop = models.ForeignKey(Workshop, on_delete=models.CASCADE, related_name="env_vars")
    key = models.CharField(_("key"), max_length=128, validators=[env_key])
    value_encrypted = models.TextField()

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
        Workshop, on_delete=models.SET_NULL, null=True, blank=True, related_name="events"
    )
    name = models.CharField(_("workload"), max_length=80)
    kind = models.CharField(_("kind"), max_length=40)
    message = models.TextField(_("message"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("workshop event")
        verbose_name_plural = _("workshop events")

    def __str__(self) -> str:
        return f"{self.name} {self.kind}"
