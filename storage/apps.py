from django.apps import AppConfig


class StorageConfig(AppConfig):
    """Per-user volumes: usage samples, daily peaks, nightly charges, expansion, retention."""

    name = "storage"
