"""The files page over a real agent: every operation is sftp-server in the user's sandbox (issue 13)."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from storage.choices import GIB
from tests.cluster.conftest import agent, start_agent  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/lib/openssh/sftp-server"),
    reason="openssh-sftp-server is not installed (make system-deps)",
)
CHUNK = 1024 * 1024


@pytest.fixture
def real_driver(agent, use_driver):  # noqa: F811 - the imported fixture
    use_driver(agent.driver)
    return agent


@pytest.fixture
def student(make_user, plans, client):
    user = make_user()
    client.force_login(user)
    return user


def upload(client, name: str, data: bytes, folder: str = "", chunk: int = CHUNK):
    """As files.js does: the file in chunks, each at its offset; returns the last response."""
    offset = 0
    while True:
        piece = data[offset : offset + chunk]
        response = client.post(
            f"/storage/files/upload/?folder={folder}&name={name}&offset={offset}&total={len(data)}",
            data=piece,
            content_type="application/octet-stream",
        )
        if response.status_code != 200:
            return response
        offset += len(piece)
        if offset >= len(data):
            return response


def names(client, path: str = "") -> list[str]:
    response = client.get("/storage/files/", {"path": path})
    assert response.status_code == 200
    return [row.name for row in response.context["rows"]]


def test_upload_list_download_mkdir_rename_delete(client, student, real_driver):
    # given a new user without a workload (and without a volume yet)
    assert names(client) == []

    # when they make a folder and upload a file of several chunks into it
    assert client.post("/storage/files/mkdir/", {"folder": "", "name": "data"}).status_code == 302
    data = os.urandom(2 * CHUNK + 12345)
    response = upload(client, "blob.bin", data, folder="data")
    assert response.json() == {"ok": True, "offset": len(data)}

    # then the folder lists the file (no half-written part left) and it downloads byte-identical
    assert names(client) == ["data"]
    assert names(client, "data") == ["blob.bin"]
    download = client.get("/storage/files/download/", {"path": "data/blob.bin"})
    assert download.status_code == 200
    assert download["Content-Length"] == str(len(data))
    assert 'filename="blob.bin"' in download["Content-Disposition"]
    assert b"".join(download.streaming_content) == data
    # written as the user's sandbox uid, not as root or the portal
    host = real_driver.volumes_dir / str(student.pk) / "data" / "blob.bin"
    assert host.read_bytes() == data
    if os.geteuid() == 0:
        assert host.stat().st_uid >= settings.LOCAL_UID_BASE

    # when they rename it, and an existing name is refused
    client.post("/storage/files/rename/", {"folder": "data", "path": "data/blob.bin", "name": "b"})
    assert names(client, "data") == ["b"]
    upload(client, "c", b"x", folder="data")
    refused = client.post(
        "/storage/files/rename/", {"folder": "data", "path": "data/b", "name": "c"}, follow=True
    )
    assert "c exists already" in refused.content.decode()
    assert names(client, "data") == ["b", "c"]

    # and delete the folder with what it holds
    client.post("/storage/files/delete/", {"folder": "", "path": "data"})
    assert names(client) == []


def test_an_upload_over_the_allowance_is_refused_with_the_numbers_before_writing(
    client, student, real_driver
):
    # given the free tier's allowance
    from storage.selectors import allowance_gib

    allowed = allowance_gib(student)
    # when the browser asks whether one byte more than that fits
    asked = allowed * GIB + 1
    check = client.post("/storage/files/check/", {"bytes": asked})
    # then it is refused with the numbers and the way out
    assert check.status_code == 413
    detail = check.json()["detail"].replace("\xa0", " ")
    assert f"this needs 30.0 GB, and you use 0.00 GiB of your {allowed} GiB storage" in detail
    assert "expand your storage" in detail
    # and an upload that declares that size is refused before anything is written
    response = client.post(
        f"/storage/files/upload/?folder=&name=big.bin&offset=0&total={asked}",
        data=b"x" * 100,
        content_type="application/octet-stream",
    )
    assert response.status_code == 413
    assert response.json()["code"] == "storage_allowance_exceeded"
    assert names(client) == []
    # while a small one fits
    assert client.post("/storage/files/check/", {"bytes": 100}).json() == {"ok": True}


def test_a_link_to_the_root_or_to_another_users_volume_shows_nothing(
    client, student, make_user, real_driver
):
    # given another user with a secret in their volume
    other = make_user()
    other_client = client.__class__()
    other_client.force_login(other)
    assert upload(other_client, "secret.txt", b"only mine").status_code == 200
    other_volume = real_driver.volumes_dir / str(other.pk)

    # when the student links / and the other volume into /root (ln -s in a workshop)
    upload(client, "mine.txt", b"mine")
    volume = real_driver.volumes_dir / str(student.pk)
    (volume / "escape").symlink_to("/")
    (volume / "x").symlink_to(other_volume)
    (volume / "y").symlink_to(other_volume / "secret.txt")

    # then the links are listed, but none leads anywhere
    assert names(client) == ["escape", "mine.txt", "x", "y"]
    for path in ("escape", "escape/usr", "x", "escape/etc"):
        assert client.get("/storage/files/", {"path": path}).status_code == 404, path
    for path in ("y", "x/secret.txt", "escape/etc/passwd"):
        assert client.get("/storage/files/download/", {"path": path}).status_code == 404, path
    # and ".." is not a way up either
    response = client.get("/storage/files/", {"path": "../.."})
    assert response.status_code == 302
    # the other user's file is untouched and deleting the link leaves it
    client.post("/storage/files/delete/", {"folder": "", "path": "x"})
    assert (other_volume / "secret.txt").read_bytes() == b"only mine"


def api_upload(client, name: str, data: bytes, folder: str = "", chunk: int = CHUNK):
    """As ``aladdin upload`` does: PUT /api/v1/files/upload, chunk by chunk; every answer."""
    answers, offset = [], 0
    while True:
        piece = data[offset : offset + chunk]
        response = client.put(
            f"/api/v1/files/upload?folder={folder}&name={name}&offset={offset}&total={len(data)}",
            data=piece,
            content_type="application/octet-stream",
        )
        answers.append(response)
        if response.status_code != 200 or response.json()["done"]:
            return answers
        offset = response.json()["offset"]


def test_the_api_uploads_in_chunks_as_the_user_and_refuses_with_the_numbers(
    client, student, real_driver
):
    # given a folder in the student's storage
    client.post("/storage/files/mkdir/", {"folder": "", "name": "in"})

    # when the CLI uploads a file of three chunks into it through the API
    data = os.urandom(2 * CHUNK + 7)
    answers = api_upload(client, "model.pt", data, folder="in")

    # then each answer gives the next offset, and the last one the whole file under its name
    assert [a.json() for a in answers] == [
        {"offset": CHUNK, "total": len(data), "done": False},
        {"offset": 2 * CHUNK, "total": len(data), "done": False},
        {"offset": len(data), "total": len(data), "done": True},
    ]
    host = real_driver.volumes_dir / str(student.pk) / "in" / "model.pt"
    assert host.read_bytes() == data
    if os.geteuid() == 0:
        assert host.stat().st_uid >= settings.LOCAL_UID_BASE
    assert names(client, "in") == ["model.pt"]

    # and a chunk that does not continue the file is refused: start again
    resumed = client.put(
        "/api/v1/files/upload?name=x.bin&offset=5&total=10",
        data=b"abcde",
        content_type="application/octet-stream",
    )
    assert resumed.status_code == 400 and "upload the file again" in resumed.json()["detail"]
    # a missing folder is 404, a name with a slash is invalid, a file over the allowance 413
    assert api_upload(client, "a.bin", b"1", folder="nowhere")[-1].status_code == 404
    bad = api_upload(client, "../a.bin", b"1")[-1]
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid")
    from storage.selectors import allowance_gib

    big = client.put(
        f"/api/v1/files/upload?name=big.bin&offset=0&total={allowance_gib(student) * GIB + 1}",
        data=b"x",
        content_type="application/octet-stream",
    )
    assert big.status_code == 413
    assert "storage allowance" in big.json()["detail"].replace("\xa0", " ")
    assert names(client) == ["in"]
