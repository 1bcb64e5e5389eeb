from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _sync_roles(sender, using="default", **kwargs):
    # post_migrate is sent once per app with models, in INSTALLED_APPS order
    # (the back office has none); auth creates each app's permissions on its
    # own signal, so by the last app's every permission exists.
    with_models = [c for c in apps.get_app_configs() if c.models_module is not None]
    if sender is not with_models[-1]:
        return
    from .roles import sync_support_group

    sync_support_group(using=using)


class BackOfficeConfig(AppConfig):
    name = "aladdin.backoffice"
    label = "backoffice"
    verbose_name = _("Back office")

    def ready(self):
        from . import checks  # noqa: F401 - registers the deploy check

        post_migrate.connect(_sync_roles, dispatch_uid="backoffice-roles")
