"""Celery tasks of the workshops app: thin, safe to run twice (DESIGN rule 4).

Each loads the row by id and acts only if it is still in the state the user
action left it in (the services' conditional updates are the claim).
"""

from __future__ import annotations

from celery import shared_task

from aladdin import cluster
from aladdin.cluster.base import DriverError
from aladdin.lib.timeutil import parse_as_of
from aladdin.workloads import images
from aladdin.workloads.models import Image

from . import idle, services

_OPTS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "autoretry_for": (DriverError,),
    "retry_backoff": 5,
    "retry_backoff_max": 120,
    "max_retries": 10,
}
_BUILD_OPTS = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (DriverError,),
    "retry_backoff": 5,
    "max_retries": 5,
}


@shared_task(name="workshops.start", **_OPTS)
def start(workshop_id: int) -> None:
    """Start the workload of a "creating" workshop; transient driver errors retry."""
    services.workshop_start_apply(workshop_id=workshop_id)


@shared_task(name="workshops.stop", **_OPTS)
def stop(workshop_id: int) -> None:
    services.workshop_stop_apply(workshop_id=workshop_id)


@shared_task(
    name="workshops.probe",
    acks_late=True,
    ignore_result=True,
    autoretry_for=(DriverError, TimeoutError),
    retry_backoff=5,
    max_retries=3,
)
def probe(workshop_id: int) -> None:
    """Measure what runs in a workshop that just started (a few tries, then it goes without)."""
    services.workshop_probe_apply(workshop_id=workshop_id)


@shared_task(name="workshops.delete", **_OPTS)
def delete(workshop_id: int) -> None:
    services.workshop_delete_apply(workshop_id=workshop_id)


@shared_task(
    name="workshops.reconcile", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def reconcile(as_of: str | None = None) -> dict[str, int]:
    """Converge workshops with the cluster; beat runs it every 30 s without ``as_of``."""
    return services.workshops_reconcile(as_of=parse_as_of(as_of) if as_of else None)


@shared_task(
    name="workshops.sync_images", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def sync_images() -> dict[str, int]:
    """Refresh the catalog's build states and start the builds that start on their own (beat)."""
    return images.images_sync(driver=cluster.get_driver())


@shared_task(name="workshops.build_image", ignore_result=True, **_BUILD_OPTS)
def build_image(image_id: int) -> None:
    """Start building one image (staff asked for it); the sync task follows its progress."""
    image = Image.objects.filter(pk=image_id).first()
    if image is not None:
        images.image_build(image=image, driver=cluster.get_driver())


@shared_task(
    name="workshops.idle_check", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def idle_check(as_of: str | None = None) -> dict[str, int]:
    """Warn about, then stop, workshops idle past their user's policy (never by default)."""
    return idle.workshops_idle_check(now=parse_as_of(as_of) if as_of else None)
