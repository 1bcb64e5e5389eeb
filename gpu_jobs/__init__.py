"""GPU jobs, saved configurations, metering, logs, ports, monitoring."""
