from django.apps import AppConfig


class GpuJobsConfig(AppConfig):
    """GPU jobs, saved configurations, metering, logs, ports, monitoring."""

    name = "gpu_jobs"

    def ready(self) -> None:
        # Workshops' quota counts running jobs too (SPEC §4.1): workshops may
        # not import this app (dependency direction), so we register with it.
        from workshops import quota

        from .admission import jobs_usage

        quota.register_usage(jobs_usage)
