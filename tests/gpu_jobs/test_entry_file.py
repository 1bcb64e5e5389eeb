"""A job whose entry file is not in the user's storage is refused at launch, with its path
(issue 17), asked of the volume through a real agent's files access (the user's sandbox)."""

from __future__ import annotations

import os

import pytest
from django.utils import timezone

from gpu_jobs.models import Job
from storage import files
from tests.cluster.conftest import agent, start_agent  # noqa: F401 - fixtures
from tests.storage.test_files_page import upload

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/lib/openssh/sftp-server"),
    reason="openssh-sftp-server is not installed (make system-deps)",
)


@pytest.fixture
def student(make_user, subscribe, client, catalog, agent, use_driver):  # noqa: F811 - imported
    use_driver(agent.driver)
    user = make_user()
    subscribe(user, "basic", timezone.now())
    client.force_login(user)
    return user


def launch(client, entry: str, **extra):
    body = {"kind": "run", "entry": entry, "gpu_type": "80g", "cards_per_worker": 1, **extra}
    return client.post("/api/v1/jobs", body, content_type="application/json")


def test_a_missing_entry_file_is_refused_with_its_path_and_nothing_starts(client, student):
    response = launch(client, "experiments/train.py")

    assert response.status_code == 400
    assert response.json()["fields"]["entry"] == [
        "/root/experiments/train.py is not in your storage. Upload it (Files page, scp or "
        "your IDE) or correct the path, then launch again."
    ]
    assert not Job.objects.filter(user=student).exists()


def test_the_check_sees_what_the_user_uploaded_and_only_files(client, student):
    assert client.post("/storage/files/mkdir/", {"folder": "", "name": "data"}).status_code == 302
    assert upload(client, "train.py", b"print('hi')\n").status_code == 200

    assert files.file_exists(user=student, path="/root/train.py") is True
    assert files.file_exists(user=student, path="/root/data") is False  # a folder
    assert files.file_exists(user=student, path="/root/nope.py") is False
    assert files.file_exists(user=student, path="/etc/passwd") is False  # outside /root


def test_a_module_entry_is_not_a_file_and_is_not_checked(client, student):
    response = launch(client, "mypkg.train", python_module=True)
    assert response.status_code == 201, response.json()
    assert Job.objects.get(user=student).entry == "mypkg.train"


def test_a_backend_without_files_access_lets_the_launch_go_on(user, subscribe, driver):
    # The fake driver has no files access: the check cannot tell, so it says nothing.
    assert files.file_exists(user=user, path="/root/train.py") is None
