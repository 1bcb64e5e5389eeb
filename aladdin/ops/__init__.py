"""The platform's own health: Prometheus metrics at /metrics and periodic-task heartbeats.

The highest layer: it reads every app (billing, storage, workshops, gpu_jobs)
and no app imports it.
"""
