"""A terminal in a running job (SPEC §7 "Terminal"): owner only, running only."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from aladdin.asgi import application
from gpu_jobs import services
from gpu_jobs.choices import JobState
from tests.wsclient import refusal_code

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


def cookie(client, user):
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


@pytest.fixture
def running_job(user, cards, catalog, driver, subscribe):
    subscribe(user, "basic", timezone.now())
    job = services.job_create(user=user, entry="train.py", gpu_type=cards["40g"])
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    return job


def session(headers, pk, *, keys: bytes | None = None):
    async def run():
        communicator = WebsocketCommunicator(
            application, f"/ws/jobs/{pk}/terminal/", headers=headers
        )
        connected, code = await communicator.connect(timeout=5)
        output = None
        if connected and keys is not None:
            await communicator.send_to(bytes_data=keys)
            output = (await communicator.receive_output(timeout=5))["bytes"]
        if connected:
            await communicator.disconnect()
        return connected, code, output

    return async_to_sync(run)()


def test_the_owner_gets_a_shell_in_the_running_job(client, user, running_job, driver):
    connected, _code, output = session(
        [cookie(client, user), ORIGIN], running_job.pk, keys=b"nvidia-smi\r"
    )
    assert connected and output == b"echo:nvidia-smi\r"
    assert driver.terminals[0].written == [b"nvidia-smi\r"] and driver.terminals[0].closed


def test_another_users_job_is_refused_with_4404(client, other_user, running_job, driver):
    path = f"/ws/jobs/{running_job.pk}/terminal/"
    assert refusal_code(path, [cookie(client, other_user), ORIGIN]) == 4404
    assert driver.terminals == []


def test_anonymous_and_ended_or_deleted_jobs_are_refused_with_their_codes(
    client, user, running_job, driver
):
    path = f"/ws/jobs/{running_job.pk}/terminal/"
    assert refusal_code(path, [ORIGIN]) == 4401
    type(running_job).objects.filter(pk=running_job.pk).update(state=JobState.SUCCEEDED)
    assert refusal_code(path, [cookie(client, user), ORIGIN]) == 4409
    type(running_job).objects.filter(pk=running_job.pk).update(deleted_at=timezone.now())
    assert refusal_code(path, [cookie(client, user), ORIGIN]) == 4404
    assert driver.terminals == []


def test_the_terminal_page_is_the_owners_only(client, user, other_user, running_job):
    client.force_login(user)
    page = client.get(f"/jobs/{running_job.pk}/terminal/")
    assert page.status_code == 200
    assert f'data-ws-path="/ws/jobs/{running_job.pk}/terminal/"' in page.content.decode()
    assert 'data-testid="job-terminal"' in client.get(f"/jobs/{running_job.pk}/").content.decode()
    client.force_login(other_user)
    assert client.get(f"/jobs/{running_job.pk}/terminal/").status_code == 404
