"""Beat's watch of the portal's pods wakes the reconcilers when a pod changes (issue 19).

The reconcile passes run every few seconds anyway (level-triggered: they
read the whole state, DESIGN rule 7). On Kubernetes the beat process, of
which there is exactly one, also watches the workload pods and sends
``gpu_jobs.reconcile`` or ``workshops.reconcile`` as soon as a pod of that
kind changes phase or goes (at most once a second per kind, the last change
never dropped: :class:`~.watch.ReconcileFeed`), so a job that ended or a pod
deleted behind the portal's back shows on the pages at once. One watcher
for this, not one per worker process: each change wakes one pass.
"""

from __future__ import annotations

import logging
from typing import Any

from .watch import PodInformer, ReconcileFeed, reconcile_feed

log = logging.getLogger(__name__)

# A pod kind's label value -> the task that converges its rows.
RECONCILE_TASKS = {"job": "gpu_jobs.reconcile", "workshop": "workshops.reconcile"}


def start(
    app: Any, api_client: Any, *, min_interval: float = 1.0
) -> tuple[PodInformer, ReconcileFeed]:
    """Watch the workload pods; each change sends its kind's reconcile task through ``app``."""
    from .driver import WORKLOAD_SELECTOR

    def send(kind: str) -> None:
        task = RECONCILE_TASKS.get(kind)
        if task:
            # Periodic tasks' options: a pass that waited long is not worth running.
            app.send_task(task, expires=30)

    feed = reconcile_feed(send, min_interval=min_interval)
    informer = PodInformer(api_client, label_selector=WORKLOAD_SELECTOR, on_event=feed)
    return informer.start(), feed


def on_beat_init(sender: Any = None, **_kwargs: Any) -> None:
    """``beat_init``: start the feed when the portal runs on Kubernetes with watching on."""
    from django.conf import settings

    if settings.CLUSTER_DRIVER != "kubernetes" or not settings.KUBERNETES_WATCH:
        return
    from aladdin.cluster import get_driver

    driver = get_driver()
    # beat_init's sender is the beat service, which knows its app (the cluster layer
    # does not import the portal's Celery module).
    app = getattr(sender, "app", None)
    if app is None:
        import celery  # type: ignore[import-untyped]  # celery ships no types

        app = celery.current_app
    start(app, driver.api_client)  # type: ignore[attr-defined]
    log.info("watching the workload pods to wake the reconcilers")
