"""Celery application: workers run every cluster operation and periodic job."""

import os

from celery import Celery, bootsteps
from celery.signals import beat_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aladdin.settings")

app = Celery("aladdin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Not a Django app (it has no AppConfig), but it has periodic tasks: the disk guard.
app.autodiscover_tasks(["aladdin.workloads"])


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Writes a heartbeat to Redis every 15 s so /healthz can tell a live worker."""

    requires = {"celery.worker.components:Timer"}

    def start(self, worker):
        from aladdin.health import record_worker_heartbeat

        record_worker_heartbeat(worker.hostname)
        self.tref = worker.timer.call_repeatedly(
            15.0, record_worker_heartbeat, (worker.hostname,), priority=10
        )

    def stop(self, worker):
        tref = getattr(self, "tref", None)
        if tref is not None:
            tref.cancel()


app.steps["worker"].add(WorkerHeartbeat)


@beat_init.connect
def _watch_pods(sender=None, **kwargs):
    # On Kubernetes, a pod's change wakes its reconciler at once (aladdin/cluster/kubernetes/feed.py).
    from aladdin.cluster.kubernetes.feed import on_beat_init

    on_beat_init(sender, **kwargs)
