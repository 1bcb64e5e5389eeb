"""Log Download (SPEC §7, issue 18): a dev job's output as a file; a task's logs from the user's volume.

A Run Task's workers write ``/root/.aladdin/tasks/<id>/worker-<n>.log`` in
the user's volume; the portal reads them through the user's own sandbox
(sftp-server as the user's uid, as the files page does), one by one or as a
``.tar.gz`` streamed, and deleting the task removes the folder.
"""

from __future__ import annotations

import io
import os
import tarfile

import pytest
from django.conf import settings
from django.urls import reverse

from gpu_jobs import services
from gpu_jobs.choices import JobKind, JobState
from tests.cluster.conftest import agent, start_agent  # noqa: F401 - fixtures
from tests.factories import JobFactory


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_a_dev_jobs_output_downloads_as_one_file_on_the_page_and_the_api(
    client, user, make_job, driver
):
    job = make_job(user, kind=JobKind.SHELL)
    output = b"epoch 1 loss 0.5\n" * 5000 + "完成\n".encode()
    driver.write_log(job.workload_name, output)
    client.force_login(user)

    page = client.get(reverse("gpu_jobs:log_download", args=[job.pk]))
    assert page.status_code == 200
    assert page["Content-Disposition"] == f'attachment; filename="job-{job.pk}.log"'
    assert page["Content-Type"].startswith("text/plain")
    assert body(page) == output

    api = client.get(f"/api/v1/jobs/{job.pk}/logs/download")
    assert api.status_code == 200 and body(api) == output
    # The detail page links it; a dev job has no task archive.
    detail = client.get(reverse("gpu_jobs:detail", args=[job.pk])).content.decode()
    assert reverse("gpu_jobs:log_download", args=[job.pk]) in detail
    assert client.get(reverse("gpu_jobs:log_archive", args=[job.pk])).status_code == 404
    assert client.get(f"/api/v1/jobs/{job.pk}/logs/archive").status_code == 404


def test_another_users_job_log_is_404(client, user, other_user, make_job, driver):
    job = make_job(other_user)
    driver.write_log(job.workload_name, b"secret output\n")
    client.force_login(user)
    for url in (
        reverse("gpu_jobs:log_download", args=[job.pk]),
        f"/api/v1/jobs/{job.pk}/logs/download",
    ):
        response = client.get(url)
        assert response.status_code == 404
        assert b"secret output" not in response.content


@pytest.mark.skipif(
    not os.path.exists("/usr/lib/openssh/sftp-server"),
    reason="openssh-sftp-server is not installed (make system-deps)",
)
@pytest.mark.django_db(transaction=True)
def test_a_tasks_worker_logs_download_one_by_one_and_as_an_archive_then_go_with_it(
    agent,  # noqa: F811 - the imported fixture
    use_driver,
    client,
    make_user,
    plans,
    cards,
    django_capture_on_commit_callbacks,
):
    use_driver(agent.driver)
    user = make_user()
    job = JobFactory(user=user, kind=JobKind.TASK, workers=2, state=JobState.SUCCEEDED, card="40g")
    # given: what the two workers wrote, in the user's volume, owned by the user's uid
    agent.driver.ensure_user_space(user_id=user.pk, storage_gib=1, quota=None)
    volume = agent.volumes_dir / str(user.pk)
    folder = volume / ".aladdin" / "tasks" / str(job.pk)
    folder.mkdir(parents=True)
    written = {
        "worker-0.log": b"rank 0: all_reduce sum = 3.0\n" * 20000,  # ~600 KiB: several reads
        "worker-1.log": b"rank 1: all_reduce sum = 3.0\n",
    }
    uid = settings.LOCAL_UID_BASE + user.pk
    for path in (volume / ".aladdin", volume / ".aladdin" / "tasks", folder):
        os.chown(path, uid, uid)
    for name, data in written.items():
        (folder / name).write_bytes(data)
        os.chown(folder / name, uid, uid)
    client.force_login(user)

    # when: each worker's log is downloaded, on the page and through the API
    for index, name in enumerate(written):
        page = client.get(reverse("gpu_jobs:log_download", args=[job.pk]), {"worker": index})
        assert page.status_code == 200, page.content[:200]
        assert body(page) == written[name]
        api = client.get(f"/api/v1/jobs/{job.pk}/logs/download", {"worker": index})
        assert body(api) == written[name]
    assert client.get(f"/api/v1/jobs/{job.pk}/logs/download", {"worker": 2}).status_code == 404

    # and: all of them as one archive, whose members match
    for url in (
        reverse("gpu_jobs:log_archive", args=[job.pk]),
        f"/api/v1/jobs/{job.pk}/logs/archive",
    ):
        archive = client.get(url)
        assert archive.status_code == 200
        assert archive["Content-Disposition"].endswith(f'filename="task-{job.pk}-logs.tar.gz"')
        with tarfile.open(fileobj=io.BytesIO(body(archive)), mode="r:gz") as tar:
            members = {
                m.name: tar.extractfile(m).read()
                for m in tar.getmembers()  # type: ignore[union-attr]
            }
        assert members == {f"task-{job.pk}/{name}": data for name, data in written.items()}

    # and: the page shows the folder to copy
    detail = client.get(reverse("gpu_jobs:detail", args=[job.pk])).content.decode()
    assert f"/root/.aladdin/tasks/{job.pk}/" in detail

    # then: deleting the task removes its logs from the volume
    with django_capture_on_commit_callbacks(execute=True):
        services.job_delete(job=job)
    assert not folder.exists()
    assert (volume / ".aladdin" / "tasks").exists()
