"""The files page in real Chromium over the real agent (issue 13): drag-and-drop upload, download.

The portal runs like `make run`; every file operation is OpenSSH's
sftp-server in a sandbox over the user's volume, started by the agent.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .conftest import REPO
from .test_purchase import _sign_up, _switch_language

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not os.path.exists("/usr/lib/openssh/sftp-server"),
        reason="openssh-sftp-server is not installed (make system-deps)",
    ),
]

# A drop of one file made in the page from base64 bytes, as a desktop's drag would bring it.
DROP = """
([b64, name]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, {type: "application/octet-stream"}));
  return transfer;
}
"""


def _portal_shell(portal, code: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        env=portal.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


def _drop(page, data: bytes, name: str) -> None:
    transfer = page.evaluate_handle(DROP, [base64.b64encode(data).decode(), name])
    page.dispatch_event("[data-testid=files-dropzone]", "drop", {"dataTransfer": transfer})


def _shots(page, shot, name: str) -> None:
    shot(page, f"{name}-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, f"{name}-390")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_a_user_uploads_by_drag_and_drop_and_downloads_it_back(page, portal, shot, tmp_path):
    # given a new user (no workshop) on the files page
    phone = _sign_up(page, portal)
    page.goto("/storage/files/")
    expect(page.get_by_test_id("files-table")).to_be_visible()
    _shots(page, shot, "empty-zh")

    # when they drop a 12 MiB file (two chunks) on a slowed-down upload link
    data = os.urandom(12 * 1024 * 1024 + 321)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": 4 * 1024 * 1024,
        },
    )
    _drop(page, data, "model.bin")

    # then the progress bar shows while it uploads
    progress = page.get_by_test_id("files-progress")
    expect(progress).to_be_visible()
    page.wait_for_function("document.getElementById('upload-progress').value > 0")
    shot(page, "uploading")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )

    # and the page lists the file once it is in
    row = page.locator("[data-testid=files-row][data-name='model.bin']")
    expect(row).to_be_visible(timeout=60_000)
    _shots(page, shot, "uploaded-zh")

    # when they download it
    with page.expect_download() as info:
        row.get_by_test_id("files-download").click()
    downloaded = Path(info.value.path())
    # then it is byte-identical
    assert downloaded.read_bytes() == data

    # given an allowance of 1 GiB, nearly full (staff's override; a file made in the volume)
    user_pk = _portal_shell(
        portal,
        "from aladdin.accounts.models import User; from storage.models import StorageAllowance; "
        f"u = User.objects.get(phone='{phone}'); "
        "StorageAllowance.objects.update_or_create(user=u, defaults={'staff_gib': 1}); "
        "print(u.pk)",
    )
    volume = portal.var_dir / "volumes" / user_pk
    filler = volume / "filler.bin"
    with filler.open("wb") as f:
        os.posix_fallocate(f.fileno(), 0, 1024**3 - 8 * 1024 * 1024)

    # when they drop a file that would pass it, in English
    _switch_language(page, "en")
    page.goto("/storage/files/")
    _drop(page, os.urandom(9 * 1024 * 1024), "too-much.bin")

    # then it is refused with the numbers and the way out, and nothing was written
    error = page.get_by_test_id("files-upload-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("this needs 9.0")
    expect(error).to_contain_text("GiB of your 1 GiB storage allowance")
    expect(error).to_contain_text("expand your storage")
    _shots(page, shot, "refused-en")
    assert not (volume / "too-much.bin").exists()
    assert not (volume / ".too-much.bin.part").exists()
    filler.unlink()
    page.goto("/storage/files/")
    _shots(page, shot, "listing-en")
