"""The manual's CUDA check as a GPU Run job, end to end (issue 6, "Done when").

A user launches ``test.py`` (the manual's script, verbatim) as a GPU Run job
on a 40G card with a torch image; the local backend runs it in the user's
sandbox on the test torch image (Python 3.11 with torch 2.13.0, the CPU
build, built once per session by tests/cluster/conftest.py); its output
reaches a websocket client of ``ws/jobs/<id>/logs/``; the job ends
succeeded and is billed to its exit. No GPU here: the script reports that
CUDA is unavailable and trains on the CPU, as it does on such a machine.
"""

from __future__ import annotations

import os
import shutil

import pytest
from django.conf import settings
from django.utils import timezone

from billing.models import LedgerEntry
from gpu_jobs import services
from gpu_jobs.choices import JobState
from gpu_jobs.metering import owed
from tests.cluster.conftest import REPO, TORCH_RECIPE, start_agent  # noqa: F401
from tests.factories import catalog_image
from tests.gpu_jobs.test_logs import collect, cookie

pytestmark = pytest.mark.django_db(transaction=True)

CUDA_CHECK = REPO / "tests" / "gpu_jobs" / "payloads" / "cuda_check.py"


@pytest.fixture
def torch_agent(start_agent, built_images, use_driver):  # noqa: F811 - the imported fixtures
    built_images.build(TORCH_RECIPE)
    agent = start_agent(**built_images.agent_env())
    if not agent.health["sandbox"]:
        pytest.skip(f"cannot sandbox here: {agent.health['sandbox_reason']}")
    use_driver(agent.driver)
    return agent


def test_the_manuals_cuda_check_runs_as_a_gpu_run_job_and_streams_to_a_websocket(
    torch_agent, client, user, cards, catalog, subscribe
):
    subscribe(user, "basic", timezone.now())
    # given: the script in the user's storage, as the IDE uploads it
    torch_agent.driver.ensure_user_space(user_id=user.pk, storage_gib=1, quota=None)
    target = torch_agent.volumes_dir / str(user.pk) / "test.py"
    shutil.copy(CUDA_CHECK, target)
    os.chown(target, settings.LOCAL_UID_BASE + user.pk, settings.LOCAL_UID_BASE + user.pk)

    # when: GPU Run on a 40G card with a torch image (the test's: the catalog's
    # torch images are CUDA builds, unavailable on a host without NVIDIA GPUs)
    image = catalog_image(TORCH_RECIPE)
    job = services.job_create(
        user=user, kind="run", entry="test.py", image=image.ref, gpu_type=cards["40g"]
    )

    # then: its output reaches a websocket client, to the end
    frames, code = collect([cookie(client, user)], job.pk, timeout=120)
    assert code == 1000 and frames[-1]["type"] == "end"
    text = "".join(f["data"] for f in frames if f["type"] == "log")
    for line in (
        "======= CUDA 测试 =======",
        "PyTorch CUDA 可用: ❌否",
        "⚠️ GPU 不可用，跳过测试",
        "使用设备: CPU",
        "Epoch 5, Loss:",
        "总训练时间:",
    ):
        assert line in text, text

    # and: the job ends succeeded, billed exactly from allocation to exit
    services.jobs_reconcile()
    job.refresh_from_db()
    assert (job.state, job.exit_code) == (JobState.SUCCEEDED, 0), job.reason
    assert job.metering_closed and len(job.gpu_devices) == 1
    charged = -sum(
        LedgerEntry.objects.filter(idempotency_key__startswith=f"gpu:job-{job.pk}:").values_list(
            "delta_micro", flat=True
        )
    )
    assert charged == job.charged_micro == owed(job, job.ended_at)


def test_a_cuda_image_is_refused_here_with_its_reason_never_run_as_something_else(
    torch_agent, user, cards, catalog, subscribe
):
    from aladdin.workloads import images

    subscribe(user, "basic", timezone.now())
    images.images_sync(driver=torch_agent.driver)
    torch = images.image_for_ref("torch:2.6.0-cu124")
    assert torch.build_state == "unavailable" and "NVIDIA" in torch.build_reason
    with pytest.raises(images.ImageUnavailable) as refused:
        services.job_create(
            user=user, kind="run", entry="test.py", image=torch.ref, gpu_type=cards["40g"]
        )
    assert torch.build_reason in str(refused.value)
