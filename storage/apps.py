from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class StorageConfig(AppConfig):
    """Per-user volumes: usage samples, daily peaks, nightly charges, expansion, retention."""

    name = "storage"
    verbose_name = _("Storage")

    def ready(self) -> None:
        # Its ledger reasons are rendered wherever an entry is shown (aladdin.lib.said).
        from . import reasons  # noqa: F401
