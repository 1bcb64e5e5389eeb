from django.db import models
from django.utils.translation import gettext_lazy as _


class PlanKind(models.TextChoices):
    PLAN = "plan", _("Subscription plan")
    EXTENSION = "extension", _("Extension pack")


class SubscriptionState(models.TextChoices):
    QUEUED = "queued", _("Queued")
    ACTIVE = "active", _("Active")
    ENDED = "ended", _("Ended")


class GrantClass(models.TextChoices):
    # Declared in spending order (SPEC §3.4); services.ledger.spend_rank relies on
    # GRANT_CLASS_RANK below, not on this declaration order.
    CARRY_OVER = "carry_over", _("Activated carry-over")
    EXTENSION = "extension", _("Extension pack")
    PLAN = "plan", _("Plan compute")


# SPEC §3.4: activated carry-over > extension packs (and vouchers) > plan compute.
GRANT_CLASS_RANK = {
    GrantClass.CARRY_OVER: 0,
    GrantClass.EXTENSION: 1,
    GrantClass.PLAN: 2,
}


class GrantState(models.TextChoices):
    ACTIVE = "active", _("Active")
    CARRIED = "carried", _("Carried over (inactive)")
    EXPIRED = "expired", _("Expired")


class LedgerKind(models.TextChoices):
    GRANT = "grant", _("Grant")
    CHARGE = "charge", _("Charge")
    EXPIRE = "expire", _("Expiry")
    CARRY = "carry", _("Carry-over")
    REACTIVATE = "reactivate", _("Reactivation")
    DEBT = "debt", _("Debt")
    DEBT_SETTLE = "debt_settle", _("Debt settled")
    VOUCHER = "voucher", _("Voucher")
    REFUND = "refund", _("Refund")
    FORFEIT = "forfeit", _("Forfeit")
