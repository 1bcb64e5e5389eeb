from django.apps import AppConfig


class GpuJobsConfig(AppConfig):
    """GPU jobs, saved configurations, metering, logs, ports, monitoring."""

    name = "gpu_jobs"
