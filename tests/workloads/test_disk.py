"""A workload filling the disk, for real (issue 14, "Done when"; SPEC §4.2).

A private agent whose volumes directory is a 64 MiB tmpfs, a reserve of
16 MiB, two students with a workshop each: one over the allowance writes
52 MiB into /root, the other stays within it. The disk guard stops the
first one's workshop with the reason and the numbers, refuses that
student's next workshop with the numbers, and leaves the other running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from aladdin.cluster.base import Phase
from aladdin.workloads import tasks as workload_tasks
from storage import services as storage_services
from tests.cluster.conftest import RunningAgent
from workshops import services as workshop_services
from workshops.choices import WorkshopState

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 2**20
DISK_MIB = 64
RESERVE_MIB = 16
FILL_MIB = 52


@pytest.fixture
def small_disk_agent(built_images):
    """A private agent whose volumes are a 64 MiB tmpfs; unmounted after the test.

    Its workshops run on the catalog's python image, built once a session.
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    base = Path(tempfile.mkdtemp(prefix="aladdin-disk-"))
    os.chmod(base, 0o711)
    (base / "var").mkdir(mode=0o700)
    volumes = base / "volumes"
    volumes.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m,mode=0711", "tmpfs", str(volumes)],
        check=True,
    )
    built_images.build_catalog_defaults()
    agent = RunningAgent(base, built_images.agent_env())
    try:
        agent.start()
        if not agent.health["sandbox"]:
            pytest.skip(f"cannot sandbox here: {agent.health['sandbox_reason']}")
        yield agent
    finally:
        with contextlib.suppress(Exception):
            agent.stop()
        subprocess.run(["umount", str(volumes)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def _write(driver, workshop, mib: int) -> None:
    """``dd`` ``mib`` MiB into /root from inside the running workshop, as its student."""
    session = driver.exec_in_workload(
        name=workshop.workload_name,
        command=["dd", "if=/dev/zero", "of=/root/fill", "bs=1M", f"count={mib}", "status=none"],
    )
    output = b""
    while True:
        stream, data = session.read(timeout=60)
        if stream == 0:
            break
        output += data
    assert session.exit_code == 0, output


def _workshop(user, catalog, name="dev"):
    workshop = workshop_services.workshop_create(
        user=user, name=name, image=catalog["image"], preset=catalog["presets"]["2C/4G"]
    )
    workshop.refresh_from_db()
    assert workshop.state == WorkshopState.RUNNING, workshop.reason
    return workshop


def test_a_workload_filling_the_disk_is_stopped_with_its_reason_and_refused_again(
    small_disk_agent, use_driver, settings, make_user, staff, catalog, plans
):
    driver = use_driver(small_disk_agent.driver)
    settings.LOCAL_DISK_RESERVE_MIB = RESERVE_MIB
    # given: a student whose allowance staff set to 0 GiB, and one on the free tier's 30 GiB
    filler, calm = make_user(), make_user()
    storage_services.storage_set_by_staff(
        user=filler, actor=staff, allowance_gib=0, reason="test: a tiny allowance"
    )
    filling, calming = _workshop(filler, catalog), _workshop(calm, catalog)

    # the agent reports the tmpfs, and says why it has no per-volume caps
    space = driver.disk_free()
    assert space.total == DISK_MIB * MIB and space.free > (DISK_MIB - 1) * MIB
    health = driver.health()
    assert health["project_quota"] is False
    assert "tmpfs" in health["project_quota_reason"]

    # when: the first fills the disk past the reserve, the second writes a little
    _write(driver, filling, FILL_MIB)
    _write(driver, calming, 1)
    assert driver.disk_free().free < RESERVE_MIB * MIB
    summary = workload_tasks.disk_guard()

    # then: the filler's workshop is stopped, with the reason and the numbers
    assert summary["below"] and summary["chosen"] == [filler.pk], summary
    filling.refresh_from_db()
    assert filling.state == WorkshopState.STOPPED
    assert "the server's disk is almost full" in filling.reason
    assert "reserve 16.0\xa0MB" in filling.reason
    assert f"your storage is {FILL_MIB}.0\xa0MB over your allowance of 0\xa0bytes" in filling.reason
    assert driver.workload_status(name=filling.workload_name).phase == Phase.MISSING
    # its files stay: stopping frees nothing, it stops the growth
    assert (small_disk_agent.volumes_dir / str(filler.pk) / "fill").stat().st_size == FILL_MIB * MIB

    # and: the student within the allowance runs on
    calming.refresh_from_db()
    assert calming.state == WorkshopState.RUNNING and calming.reason == ""
    assert driver.workload_status(name=calming.workload_name).phase == Phase.RUNNING

    # and: a new workload of the filler is refused, with the numbers and the way out
    with pytest.raises(workshop_services.WorkshopError) as refused:
        _workshop(filler, catalog, name="again")
    message = str(refused.value)
    assert "(0.1 GiB) is over your allowance (0 GiB)" in message
    assert "Delete files or expand your storage" in message
