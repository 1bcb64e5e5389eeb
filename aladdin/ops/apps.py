from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OpsConfig(AppConfig):
    name = "aladdin.ops"
    label = "ops"
    verbose_name = _("Operations")

    def ready(self):
        # Connects Celery's task signals in every process that loads Django:
        # the worker (where tasks run), beat and web (eager runs, tests).
        from . import receivers  # noqa: F401
