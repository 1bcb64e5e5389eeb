"""Per-user volumes: allowance, daily peaks, nightly charges, retention (SPEC §4.2)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .choices import ReclaimReason


class StorageAllowance(models.Model):
    """A user's volume: the allowance they chose, a staff override, a hold, the last sample.

    A row exists for every user whose volume exists (``has_volume``); sampling
    and retention only look at those rows. The allowance itself is derived
    (storage.selectors.allowance_gib): the plan's free storage, raised to
    ``chosen_gib`` up to the plan's maximum, or ``staff_gib`` when staff set one.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="storage"
    )
    chosen_gib = models.PositiveIntegerField(
        default=0, help_text=_("Allowance the user expanded to, in GiB (0: the plan's free).")
    )
    staff_gib = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("Allowance set by staff, in GiB; beyond the plan's max.")
    )
    has_volume = models.BooleanField(default=True)
    last_bytes = models.BigIntegerField(default=0, help_text=_("Last sampled use, in bytes."))
    last_sampled_at = models.DateTimeField(null=True, blank=True)
    hold = models.BooleanField(default=False, help_text=_("Staff hold: never reclaim."))
    hold_reason = models.TextField(blank=True)
    hold_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    hold_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("storage allowance")
        verbose_name_plural = _("storage allowances")

    def __str__(self) -> str:
        return f"storage of {self.user_id}"


class DailyPeak(models.Model):
    """The largest use of one Asia/Shanghai day; ``settled`` once the night charge ran for it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="storage_peaks"
    )
    day = models.DateField(help_text=_("Asia/Shanghai calendar day."))
    peak_bytes = models.BigIntegerField(help_text=_("Largest sampled use that day, in bytes."))
    settled = models.BooleanField(default=False)

    class Meta:
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
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="storage_charges"
    )
    day = models.DateField(help_text=_("Asia/Shanghai calendar day charged."))
    peak_bytes = models.BigIntegerField(help_text=_("Peak use that day, in bytes."))
    charged_gib = models.PositiveIntegerField(help_text=_("Whole GiB over the free storage."))
    free_gib = models.PositiveIntegerField(help_text=_("Free storage of the plan, in GiB."))
    amount_micro = models.BigIntegerField(help_text=_("Fee, in µDCU."))
    ledger_key = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-day",)
        constraints = [
            models.UniqueConstraint(fields=("user", "day"), name="storage_charge_user_day"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.day}: {self.amount_micro} µDCU"


class RetentionWarning(models.Model):
    """The in-app + SMS warning sent 3 days before a reclaim; one per (user, reclaim time)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="storage_warnings"
    )
    sent_at = models.DateTimeField()
    reclaim_at = models.DateTimeField()

    class Meta:
        ordering = ("-sent_at",)
        constraints = [
            models.UniqueConstraint(fields=("user", "reclaim_at"), name="storage_warning_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} warned for {self.reclaim_at:%Y-%m-%d %H:%M}"


class Reclamation(models.Model):
    """Record of a reclaimed volume: whose, when, how large, why (SPEC §4.2)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="storage_reclamations"
    )
    at = models.DateTimeField()
    bytes = models.BigIntegerField(help_text=_("Use when reclaimed, in bytes."))
    reason = models.CharField(max_length=16, choices=ReclaimReason.choices)
    basis_at = models.DateTimeField(
        null=True, blank=True, help_text=_("max(end of last plan or sign-up, last activity).")
    )

    class Meta:
        ordering = ("-at",)

    def __str__(self) -> str:
        return f"{self.user_id} reclaimed {self.at:%Y-%m-%d %H:%M}"
