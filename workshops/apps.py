from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WorkshopsConfig(AppConfig):
    """Images, resource presets, workshops (persistent dev environments), SSH keys, terminal."""

    name = "workshops"
    verbose_name = _("Workshops")

    def ready(self) -> None:
        # Its reasons, and the cluster's, are rendered wherever a row is shown (aladdin.lib.said).
        # The quota is shared with GPU jobs and lives below both apps
        # (aladdin.workloads): each app adds its own usage to it.
        from aladdin.workloads import quota
        from aladdin.workloads import reasons as _workload_reasons  # noqa: F401

        from . import reasons as _reasons  # noqa: F401
        from .selectors import workshops_usage

        quota.register_usage(workshops_usage)

        # A ban or a password reset by staff revokes SSH keys with the rest.
        from aladdin.accounts.services import register_access_revoker

        from .services import ssh_keys_revoke_all

        register_access_revoker(ssh_keys_revoke_all)

        # Below the host's free-space reserve, the disk guard (aladdin.workloads,
        # below this app) stops the workshops of the users furthest over their allowance.
        from aladdin.workloads import disk

        from .services import workshops_stop_all

        disk.register_stopper(workshops_stop_all)
