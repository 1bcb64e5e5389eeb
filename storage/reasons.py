"""The nightly storage charge's ledger reason, read in the reader's language."""

from django.utils.translation import gettext_lazy as _

from aladdin.lib.said import define

define("ledger.storage", _("Storage %(day)s: %(gib)s GiB over %(free)s GiB free"))
