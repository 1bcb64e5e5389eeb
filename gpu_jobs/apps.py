from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class GpuJobsConfig(AppConfig):
    """GPU jobs, saved configurations, metering, logs, ports, monitoring."""

    name = "gpu_jobs"
    verbose_name = _("GPU jobs")

    def ready(self) -> None:
        # Its reasons, and the cluster's, are rendered wherever a row is shown (aladdin.lib.said).
        # The CPU/memory quota counts running jobs too (SPEC §4.1); it lives
        # below this app (aladdin.workloads), so each app registers its usage.
        from aladdin.workloads import quota
        from aladdin.workloads import reasons as _workload_reasons  # noqa: F401

        from . import reasons as _reasons  # noqa: F401
        from .admission import jobs_usage

        quota.register_usage(jobs_usage)

        # The disk guard (aladdin.workloads) stops jobs too, through the job's own stop.
        from aladdin.workloads import disk

        from .services import jobs_stop_all

        disk.register_stopper(jobs_stop_all)

        from . import checks  # noqa: F401 - registers the deploy checks
