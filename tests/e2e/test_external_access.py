"""External access end to end (SPEC §7, issue 15): a job's server at its own URL, in a real browser.

The portal runs like `make run` (web, worker, beat, the local agent and the
port proxy ``ports``). A student launches a Run Shell job on the catalog's
python:3.11 image with "+ External access" for two ports: Python's
``http.server`` on 8888 (what the manual's Jupyter stands for) and a small
standard-library server of ours on 8765 that echoes websockets and answers
plain requests with the Cookie header it received. The port URLs are
``http://<token>.localhost:<ALADDIN_PORTS_PORT>/``: Chromium resolves every
``*.localhost`` name to loopback by itself (no resolver rules needed); the
Python clients here connect to 127.0.0.1 and send that Host.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from playwright.sync_api import expect

from tests.e2e.test_purchase import _sign_up
from tests.e2e.test_run_shell import _portal_shell

pytestmark = pytest.mark.e2e

BIG = 100 * 2**20

SERVE = """#!/bin/bash
# The websocket server in the background, http.server in the foreground.
python /root/ws_echo.py &
exec python -m http.server 8888 --bind 0.0.0.0 --directory /root/site
"""

# Standard library only: the sandbox has the image's Python and nothing else.
WS_ECHO = r"""
import base64, hashlib, socketserver, struct

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        request = self.rfile.readline()
        headers = {}
        while (line := self.rfile.readline().strip()):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("upgrade", "").lower() != "websocket":
            cookie = headers.get("cookie", "(none)")
            with open("/root/cookies.log", "a") as log:
                log.write(cookie + "\n")
            body = f"cookie: {cookie}".encode()
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
            return
        accept = base64.b64encode(
            hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest()
        ).decode()
        self.wfile.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        self.wfile.flush()
        while True:
            first, second = self.rfile.read(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self.rfile.read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if second & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            if opcode == 8:  # close: answer it and end
                self.wfile.write(b"\x88\x00")
                return
            if opcode == 9:  # ping -> pong
                opcode, data = 10, data
            if opcode == 1:
                data = b"echo: " + data
            size = len(data)
            head = bytes([0x80 | opcode])
            head += bytes([size]) if size < 126 else b"\x7e" + struct.pack("!H", size)
            self.wfile.write(head + data)
            self.wfile.flush()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


Server(("0.0.0.0", 8765), Handler).serve_forever()
"""

API_CALL = """
async ([method, path, body]) => {
  const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
  const response = await fetch(path, {
    method,
    headers: {"Content-Type": "application/json", "X-CSRFToken": token},
    body: body === null ? undefined : JSON.stringify(body),
  });
  return response.status;
}
"""


def _write_files(portal, user_id: int) -> None:
    """The job's script, the echo server and a site (a page and a 100 MiB file) in /root."""
    volume = portal.var_dir / "volumes" / str(user_id)
    site = volume / "site"
    site.mkdir(parents=True, exist_ok=True)
    files = {
        volume / "serve.sh": SERVE,
        volume / "ws_echo.py": WS_ECHO,
        site / "hello.txt": "hello from the job\n",
    }
    for path, text in files.items():
        path.write_text(text)
    with (site / "big.bin").open("wb") as f:
        f.truncate(BIG)  # sparse: what crosses the proxy is the point, not the disk
    uid = settings.LOCAL_UID_BASE + user_id
    for path in (volume, site, *files, site / "big.bin"):
        os.chown(path, uid, uid)
    volume.chmod(0o700)


def _subscribe(portal, phone: str) -> int:
    return int(
        _portal_shell(
            portal,
            "from aladdin.accounts.models import User; from billing.models import Plan; "
            "from billing import services; "
            f"u = User.objects.get(phone='{phone}'); "
            "services.subscription_create(user=u, plan=Plan.objects.get(code='basic')); "
            "print(u.pk)",
        ).splitlines()[-1]
    )


def _connect(url: str) -> tuple[http.client.HTTPConnection, str]:
    """A connection to the proxy for ``url`` (127.0.0.1, its port) and the Host to send."""
    parts = urlsplit(url)
    return http.client.HTTPConnection("127.0.0.1", parts.port, timeout=10), parts.netloc


def _get(url: str, path: str = "/") -> tuple[int, bytes]:
    conn, host = _connect(url)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_a_jobs_server_is_reached_at_its_url_and_only_while_it_runs(browser, page, portal, shot):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as ws_connect

    # given a student with a plan and a server script in their storage
    phone = _sign_up(page, portal)
    user_id = _subscribe(portal, phone)
    _write_files(portal, user_id)

    # when they launch it as Run Shell with two ports open to the browser
    page.goto("/jobs/new/")
    page.select_option("select[name=kind]", "shell")
    page.fill("input[name=entry]", "serve.sh")
    page.select_option("select[name=gpu_type]", "40g")
    page.fill("input[name=ports]", "8888, 8765")
    page.get_by_test_id("job-launch").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    job_path = re.search(r"/jobs/\d+/", page.url).group(0)
    job_id = int(job_path.strip("/").split("/")[-1])

    # then, once the image is built and the job runs, the page shows a URL per port
    expect(page.locator("#job-status")).to_have_attribute("data-state", "running", timeout=240_000)
    page.reload()  # the ports card is rendered with the page: the links appear once running
    links = page.get_by_test_id("port-url")
    expect(links).to_have_count(2)
    urls = dict(
        re.match(r"\s*(\d+)\s*→\s*(\S+)", item).groups()
        for item in page.get_by_test_id("job-ports").locator("li").all_inner_texts()
    )
    http_url, ws_url = urls["8888"], urls["8765"]
    port_domain = f"localhost:{portal.env['ALADDIN_PORTS_PORT']}"
    assert re.fullmatch(rf"http://[0-9a-f]{{32}}\.{re.escape(port_domain)}/", http_url)
    shot(page, "job-with-urls")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "job-with-urls-narrow")
    page.set_viewport_size({"width": 1280, "height": 900})

    # and the browser opens it in a new tab (Chromium resolves *.localhost
    # itself) and sees http.server's listing, once the server listens
    with page.context.expect_page() as opened:
        page.locator(f"a[href='{http_url}']").click()
    tab = opened.value
    deadline = time.monotonic() + 60
    while "hello.txt" not in (tab.content() or "") and time.monotonic() < deadline:
        time.sleep(0.5)  # "nothing is listening yet" until python has started
        tab.reload()
    expect(tab.locator("body")).to_contain_text("Directory listing for /")
    expect(tab.locator("a[href='hello.txt']")).to_be_visible()
    tab.locator("a[href='hello.txt']").click()
    expect(tab.locator("body")).to_contain_text("hello from the job")

    # and the portal's session cookie stays with the portal: the browser
    # holds it host-only on 127.0.0.1, and the job's server got none
    session = [c for c in page.context.cookies() if c["name"] == "sessionid"]
    assert session and session[0]["domain"] == "127.0.0.1", session
    tab.goto(ws_url)
    expect(tab.locator("body")).to_contain_text("cookie: (none)")
    volume = portal.var_dir / "volumes" / str(user_id)
    assert "sessionid" not in (volume / "cookies.log").read_text()
    tab.close()

    # and a real websocket client is echoed through the URL
    parts = urlsplit(ws_url)
    ws_sock = socket.create_connection(("127.0.0.1", parts.port))
    # Kept open across the job's stop below, hence no context manager.
    ws = ws_connect(f"ws://{parts.netloc}/", sock=ws_sock, open_timeout=10, legacy=True)
    ws.send("hi there")
    assert ws.recv(timeout=10) == "echo: hi there"
    ws.send("x" * 5000)
    assert ws.recv(timeout=10) == "echo: " + "x" * 5000

    # and 100 MiB stream through without the proxy holding them
    proxy_pid = portal.processes["ports"].pid
    rss_before = _rss_kib(proxy_pid)
    conn, host = _connect(http_url)
    conn.request("GET", "/big.bin", headers={"Host": host})
    response = conn.getresponse()
    assert response.status == 200
    received, rss_max = 0, rss_before
    while chunk := response.read(2**20):
        received += len(chunk)
        rss_max = max(rss_max, _rss_kib(proxy_pid))
    conn.close()
    assert received == BIG
    growth_mib = (rss_max - rss_before) / 1024
    print(
        f"proxy RSS {rss_before / 1024:.1f} MiB before, {rss_max / 1024:.1f} MiB at most "
        f"during the 100 MiB download (+{growth_mib:.1f} MiB)"
    )
    # Spliced in the kernel: the download never reaches the proxy's memory.
    # (Its RSS at rest, Django and the apps loaded, is itself above 100 MiB:
    # the growth is what would show buffering.)
    assert growth_mib < 8, growth_mib

    # and another user can neither add nor remove a port of this job (404),
    # where the owner can (the same call, so the 404 is about the owner)
    other = browser.new_context(base_url=portal.url, locale="zh-CN")
    try:
        intruder = other.new_page()
        _sign_up(intruder, portal)
        intruder.goto("/overview/")
        ports_api = f"/api/v1/jobs/{job_id}/ports"
        assert intruder.evaluate(API_CALL, ["POST", ports_api, {"port": 8188}]) == 404
        assert intruder.evaluate(API_CALL, ["DELETE", f"{ports_api}/8888", None]) == 404
    finally:
        other.close()
    assert page.evaluate(API_CALL, ["POST", ports_api, {"port": 8188}]) == 201
    assert _get(http_url)[0] == 200  # the intruder's DELETE left it open

    # when the student stops the job
    page.reload()
    page.get_by_test_id("job-stop").click()
    stopped_at = time.monotonic()

    # then its URL answers 404 within a second, and the open websocket is cut
    status = None
    while time.monotonic() - stopped_at < 1.0:
        status, _body = _get(http_url)
        if status == 404:
            break
        time.sleep(0.05)
    assert status == 404, f"still {status} a second after Stop"
    print(f"the URL answered 404 {time.monotonic() - stopped_at:.2f} s after Stop")
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=2)
    ws.close()
    expect(page.locator("#job-status")).to_have_attribute("data-state", "stopped", timeout=60_000)
    assert _get(http_url)[0] == 404
