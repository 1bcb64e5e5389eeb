"""The portal on the Kubernetes backend (the API-server stub): what issue 19's "Done when" asks.

- a pod deleted behind the portal's back ends its workshop with a reason
  after the reconcile task;
- a worker killed between "create" and "save" leaves exactly one pod and
  one row: the create succeeded, the save was lost, the retry finds its own
  pod (409 / found by name) and the reconciler converges the row.
"""

from __future__ import annotations

import time

import pytest

from aladdin.cluster.base import LABEL_OWNER, Phase
from tests import factories
from workshops import services, tasks
from workshops.choices import WorkshopState
from workshops.models import Workshop


class WorkerKilled(BaseException):
    """The Celery worker dying mid-task (not an Exception: nothing catches it)."""


@pytest.fixture
def portal_driver(use_driver, k8s_driver, catalog):
    driver = use_driver(k8s_driver)
    yield driver
    for status in driver.list_workloads():
        driver.stop_workload(name=status.name, grace_seconds=0)


def pods_named(driver, name: str) -> list:
    return driver.core.list_pod_for_all_namespaces(label_selector=f"{LABEL_OWNER}={name}").items


def wait_running(driver, name: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while driver.workload_status(name=name).phase != Phase.RUNNING:
        assert time.monotonic() < deadline, driver.workload_status(name=name)
        time.sleep(0.05)


def test_a_pod_deleted_behind_the_portals_back_fails_its_workshop_with_a_reason(
    user, portal_driver
):
    workshop = factories.WorkshopFactory(user=user)
    wait_running(portal_driver, workshop.workload_name)
    tasks.reconcile()
    workshop.refresh_from_db()
    assert workshop.state == WorkshopState.RUNNING

    (pod,) = pods_named(portal_driver, workshop.workload_name)
    portal_driver.core.delete_namespaced_pod(
        pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0
    )
    deadline = time.monotonic() + 20
    # Gone from the API server, and from the driver's watch cache (a moment later):
    # the pass that runs once the portal has seen it ends the workshop.
    while (
        pods_named(portal_driver, workshop.workload_name)
        or portal_driver.workload_status(name=workshop.workload_name).phase != Phase.MISSING
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    counts = tasks.reconcile()

    workshop.refresh_from_db()
    assert counts["failed"] == 1
    assert workshop.state == WorkshopState.FAILED
    assert workshop.reason == "The workshop's container is gone."


def test_a_worker_killed_between_create_and_save_leaves_one_pod_and_one_row(
    user, portal_driver, monkeypatch
):
    workshop = factories.WorkshopFactory(user=user, run=False)

    # The start task creates the pod, then dies before it saves anything.
    def killed(*args, **kwargs):
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr(services, "_apply_status", killed)
        with pytest.raises(WorkerKilled):
            services.workshop_start_apply(workshop_id=workshop.pk)
    workshop.refresh_from_db()
    assert workshop.state == WorkshopState.CREATING
    assert len(pods_named(portal_driver, workshop.workload_name)) == 1

    # Celery redelivers the task (acks_late), and the reconciler runs too.
    services.workshop_start_apply(workshop_id=workshop.pk)
    wait_running(portal_driver, workshop.workload_name)
    tasks.reconcile()

    workshop.refresh_from_db()
    assert workshop.state == WorkshopState.RUNNING
    assert Workshop.objects.filter(user=user).count() == 1
    assert len(pods_named(portal_driver, workshop.workload_name)) == 1
    assert [s.name for s in portal_driver.list_workloads()] == [workshop.workload_name]
