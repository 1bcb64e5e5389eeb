"""Per-user volumes: allowance, daily peaks, nightly charges, retention (SPEC §4.2)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from aladdin.lib.units import format_micro

from .choices import ReclaimReason


class StorageAllowance(models.Model):
    """A user's volume: the allowance they chose, a staff override, a hold, the last sample.

    A row exists for every user whose volume exists (``has_volume``); sampling
    and retention only look at those rows. The allowance itself is derived
    (storage.selectors.allowance_gib): the plan's free storage, raised to
    ``chosen_gib`` up to the plan's maximum, or ``staff_gib`` when staff set one.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="storage",
        verbose_name=_("user"),
    )
    chosen_gib = models.PositiveIntegerField(
        default=0,
        help_text=_("Allowance the user expanded to, in GiB (0: the plan's free)."),
        verbose_name=_("chosen allowance (GiB)"),
    )
    staff_gib = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=_("Allowance set by staff, in GiB; beyond the plan's max."),
        verbose_name=_("staff allowance (GiB)"),
    )
    has_volume = models.BooleanField(default=True, verbose_name=_("has a volume"))
    last_bytes = models.BigIntegerField(
        default=0,
        help_text=_("Last sampled use, in bytes."),
        verbose_name=_("last sampled use (bytes)"),
    )
    last_sampled_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last sampled at"))
    hold = models.BooleanField(
        default=False, help_text=_("Staff hold: never reclaim."), verbose_name=_("hold")
    )
    hold_reason = models.TextField(blank=True, verbose_name=_("hold reason"))
    hold_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("held by"),
    )
    hold_at = models.DateTimeField(null=True, blank=True, verbose_name=_("held at"))
    created_at = models.DateTimeField(default=timezone.now, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("storage allowance")
        verbose_name_plural = _("storage allowances")

    def __str__(self) -> str:
        return f"storage of {self.user_id}"


class DailyPeak(models.Model):
    """The largest use of one Asia/Shanghai day; ``settled`` once the night charge ran for it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="storage_peaks",
        verbose_name=_("user"),
    )
    day = models.DateField(help_text=_("Asia/Shanghai calendar day."), verbose_name=_("day"))
    peak_bytes = models.BigIntegerField(
        help_text=_("Largest sampled use that day, in bytes."), verbose_name=_("peak use (bytes)")
    )
    settled = models.BooleanField(default=False, verbose_name=_("settled"))

    class Meta:
        verbose_name = _("daily peak")
        verbose_name_plural = _("daily peaks")
        ordering = ("-day",)
        constraints = [
            models.UniqueConstraint(fields=("user", "day"), name="storage_peak_user_day"),
        ]
        indexes = [models.Index(fields=("settled", "day"), name="storage_peak_settled_day")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.day}: {self.peak_bytes}"


class StorageCharge(models.Model):
    """The storage fee of one (user, day), written in the transaction of its ledger charge."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="storage_charges",
        verbose_name=_("user"),
    )
    day = models.DateField(
        help_text=_("Asia/Shanghai calendar day charged."), verbose_name=_("day")
    )
    peak_bytes = models.BigIntegerField(
        help_text=_("Peak use that day, in bytes."), verbose_name=_("peak use (bytes)")
    )
    charged_gib = models.PositiveIntegerField(
        help_text=_("Whole GiB over the free storage."), verbose_name=_("charged (GiB)")
    )
    free_gib = models.PositiveIntegerField(
        help_text=_("Free storage of the plan, in GiB."), verbose_name=_("free (GiB)")
    )
    amount_micro = models.BigIntegerField(
        help_text=_("Fee, in µDCU."), verbose_name=_("fee (µDCU)")
    )
    ledger_key = models.CharField(max_length=200, verbose_name=_("ledger key"))
    created_at = models.DateTimeField(default=timezone.now, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("storage charge")
        verbose_name_plural = _("storage charges")
        ordering = ("-day",)
        constraints = [
            models.UniqueConstraint(fields=("user", "day"), name="storage_charge_user_day"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.day}: {format_micro(self.amount_micro)} DCU"


class RetentionWarning(models.Model):
    """The in-app + SMS warning sent 3 days before a reclaim; one per (user, reclaim time)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="storage_warnings",
        verbose_name=_("user"),
    )
    sent_at = models.DateTimeField(verbose_name=_("sent at"))
    reclaim_at = models.DateTimeField(verbose_name=_("reclaim at"))

    class Meta:
        verbose_name = _("retention warning")
        verbose_name_plural = _("retention warnings")
        ordering = ("-sent_at",)
        constraints = [
            models.UniqueConstraint(fields=("user", "reclaim_at"), name="storage_warning_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} warned for {self.reclaim_at:%Y-%m-%d %H:%M}"


class Reclamation(models.Model):
    """Record of a reclaimed volume: whose, when, how large, why (SPEC §4.2)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="storage_reclamations",
        verbose_name=_("user"),
    )
    at = models.DateTimeField(verbose_name=_("reclaimed at"))
    bytes = models.BigIntegerField(
        help_text=_("Use when reclaimed, in bytes."), verbose_name=_("use (bytes)")
    )
    reason = models.CharField(
        max_length=16, choices=ReclaimReason.choices, verbose_name=_("reason")
    )
    basis_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("max(end of last plan or sign-up, last activity)."),
        verbose_name=_("counted from"),
    )

    class Meta:
        verbose_name = _("reclamation")
        verbose_name_plural = _("reclamations")
        ordering = ("-at",)

    def __str__(self) -> str:
        return f"{self.user_id} reclaimed {self.at:%Y-%m-%d %H:%M}"
