"""Constants of the storage app (SPEC §4.2)."""

from django.db import models
from django.utils.translation import gettext_lazy as _

GIB = 1 << 30
# SPEC §4.2: 0.0015 DCU per GiB over the free storage per day, in µDCU.
FEE_PER_GIB_DAY_MICRO = 1500
RETENTION_DAYS = 15
WARNING_DAYS = 3


class ReclaimReason(models.TextChoices):
    RETENTION = "retention", _("No plan and no activity for 15 days")
    STAFF = "staff", _("Reclaimed by staff")
