"""The catalog's buildable images on the real local backend (issue 14, "Done when").

Every catalog image this host can build (the plain python images: the CUDA
ones need an NVIDIA driver, ubuntu a root filesystem) is built by the agent
and runs a Run Shell script that calls ``python`` and ``pip --version``:
what the manual's Run Shell recipes rely on. Each prints exactly the Python
its recipe names. The agent builds them into the session's images root (tests/conftest.py).
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.utils import timezone

from aladdin.cluster.images import BuildState
from aladdin.workloads import images
from aladdin.workloads.models import Image
from gpu_jobs import services
from gpu_jobs.choices import JobState
from gpu_jobs.models import Job
from tests.cluster.conftest import wait_for_image
from tests.gpu_jobs.test_local_jobs import output, wait_for, write_script

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = "python --version\npip --version\npython -c 'import sys; print(sys.prefix)'\n"


def test_run_shell_has_python_and_pip_on_every_buildable_catalog_image(
    agent, portal_driver, user, cards, catalog, subscribe
):
    subscribe(user, "advanced", timezone.now())
    images.images_sync(driver=agent.driver)
    buildable = [
        image
        for image in Image.objects.filter(is_active=True)
        if image.build_state != BuildState.UNAVAILABLE
    ]
    assert {i.ref for i in buildable} == {
        "python:3.10",
        "python:3.11",
        "python:3.12",
        "python:3.13",
    }, [(i.ref, i.build_state, i.build_reason) for i in Image.objects.all()]
    write_script(agent, user, "check.sh", SCRIPT)
    for image in buildable:
        # Built by the test's agent (3.11 and 3.12 already are: the session's).
        agent.driver.build_image(image.recipe())
        assert wait_for_image(agent.driver, image.recipe())[-1].state == BuildState.READY
        job = services.job_create(
            user=user, kind="shell", entry="check.sh", image=image.ref, gpu_type=cards["40g"]
        )
        ended = wait_for(lambda j=job: _ended(j.pk), timeout=60)
        text = output(agent, ended)
        assert ended.state == JobState.SUCCEEDED, (image.ref, ended.reason, text)
        assert f"Python {image.python_version}." in text, text
        assert f"(python {image.python_version})" in text, text  # pip's own line
        assert "/usr" not in text.splitlines()[-1], text  # the image's prefix, not the host's


def _ended(job_id: int) -> Job | None:
    services.jobs_reconcile()
    job = Job.objects.get(pk=job_id)
    return job if job.state not in (JobState.STARTING, JobState.RUNNING) else None


def test_a_users_own_python_under_root_runs_a_job_whatever_the_image(
    agent, portal_driver, built_images, user, cards, catalog, subscribe
):
    """SPEC §6: a conda (or any) Python the user set up under /root is the job's interpreter.

    Stands in for Miniconda: a copy of a built Python environment placed in
    the user's volume as /root/miniconda3 (relocatable: its binaries find
    their library relative to themselves), owned by the user.
    """
    import shutil
    import subprocess

    from tests.cluster.conftest import SMALL_RECIPE

    subscribe(user, "advanced", timezone.now())
    built_images.build(SMALL_RECIPE)
    agent.driver.ensure_user_space(user_id=user.pk, storage_gib=1, quota=None)
    conda = agent.volumes_dir / str(user.pk) / "miniconda3"
    shutil.copytree(built_images.root / "envs" / SMALL_RECIPE.key(), conda, symlinks=True)
    uid = settings.LOCAL_UID_BASE + user.pk
    subprocess.run(["chown", "-R", f"{uid}:{uid}", str(conda)], check=True)
    write_script(
        agent, user, "which.py", "import sys, six; print('EXE', sys.executable, six.__version__)\n"
    )
    # The catalog's CUDA image is unavailable here, and ignored with an interpreter.
    job = services.job_create(
        user=user,
        entry="which.py",
        image="torch:2.6.0-cu124",
        interpreter="/root/miniconda3/bin/python",
        gpu_type=cards["40g"],
    )
    ended = wait_for(lambda: _ended(job.pk), timeout=60)
    text = output(agent, ended)
    assert ended.state == JobState.SUCCEEDED, (ended.reason, text)
    assert "EXE /root/miniconda3/bin/python 1.16.0" in text, text
