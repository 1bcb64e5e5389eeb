"""External access (SPEC §7, issue 15): exposed ports, their URLs, and the port proxy.

The proxy is exercised over real TCP: a real HTTP server stands for the
job's server, and ``connect`` (the driver's ``connect_port``) opens a socket
to it. The agent's own relay into a sandbox is tested with the SSH gateway
(tests/sshgw, tests/cluster/test_connect_port.py).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings
from django.utils import timezone

from aladdin.cluster.base import DriverError, PortStream
from gpu_jobs import proxy, selectors, services
from gpu_jobs.choices import JobState
from gpu_jobs.models import JobPort
from gpu_jobs.validation import JobError, JobNotFound

DOMAIN = "ports.test:8001"


# --- services and API --------------------------------------------------------------


def test_a_port_gets_an_unguessable_url_once(user, make_job):
    job = make_job(user)
    row = services.port_add(job=job, port=8888)
    assert len(row.token) == 32 and int(row.token, 16) >= 0
    assert services.port_add(job=job, port=8888).pk == row.pk
    other = services.port_add(job=job, port=8188)
    assert other.token != row.token
    job.refresh_from_db()
    assert job.ports == [8188, 8888]
    with override_settings(PORTS_SCHEME="https", PORTS_DOMAIN="ports.example.net"):
        assert selectors.port_url(row) == f"https://{row.token}.ports.example.net/"


def test_a_removed_port_comes_back_with_a_new_token(user, make_job):
    job = make_job(user)
    first = services.port_add(job=job, port=8888)
    services.port_remove(job=job, port=8888)
    assert proxy.lookup(first.token) is None
    again = services.port_add(job=job, port=8888)
    assert again.token != first.token
    with pytest.raises(JobNotFound):
        services.port_remove(job=job, port=9999)


def test_ports_are_refused_on_an_ended_job_and_out_of_range(user, make_job):
    job = make_job(user)
    with pytest.raises(JobError):
        services.port_add(job=job, port=80)
    for port in range(9000, 9008):
        services.port_add(job=job, port=port)
    with pytest.raises(JobError):
        services.port_add(job=job, port=9100)
    ended = make_job(user, state=JobState.SUCCEEDED)
    with pytest.raises(JobError):
        services.port_add(job=ended, port=8888)


def test_lookup_leads_only_to_an_open_port_of_a_live_job(user, make_job):
    job = make_job(user)
    row = services.port_add(job=job, port=8888)
    target = proxy.lookup(row.token)
    assert target.workload == job.workload_name and target.port == 8888 and target.running
    assert proxy.open_tokens({row.token, "0" * 32}) == {row.token}
    job.stop_requested_at = timezone.now()
    job.save()
    assert proxy.lookup(row.token) is None and proxy.open_tokens({row.token}) == set()
    job.stop_requested_at = None
    job.state = JobState.SUCCEEDED
    job.save()
    assert proxy.lookup(row.token) is None and proxy.open_tokens({row.token}) == set()


def test_the_api_adds_lists_and_removes_ports(client, user, make_job, subscribe):
    job = make_job(user)
    client.force_login(user)
    added = client.post(
        f"/api/v1/jobs/{job.pk}/ports", {"port": 8888}, content_type="application/json"
    )
    assert added.status_code == 201, added.content
    url = added.json()["url"]
    assert url.endswith(f".{selectors.settings.PORTS_DOMAIN}/")
    detail = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert detail["port_urls"] == [{"port": 8888, "url": url}]
    assert client.delete(f"/api/v1/jobs/{job.pk}/ports/8888").status_code == 204
    assert client.get(f"/api/v1/jobs/{job.pk}").json()["port_urls"] == []
    assert client.delete(f"/api/v1/jobs/{job.pk}/ports/8888").status_code == 404
    bad = client.post(f"/api/v1/jobs/{job.pk}/ports", {"port": 22}, content_type="application/json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid"


def test_ports_asked_for_at_launch_get_their_urls(client, user, cards, catalog, driver, subscribe):
    subscribe(user, "basic", timezone.now())
    client.force_login(user)
    response = client.post(
        "/api/v1/jobs",
        {"kind": "run", "entry": "a.py", "gpu_type": "40g", "ports": [8888, 8188]},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    urls = response.json()["port_urls"]
    assert [u["port"] for u in urls] == [8188, 8888]
    assert JobPort.objects.filter(job_id=response.json()["id"]).count() == 2


# --- the proxy over real TCP -------------------------------------------------------------


class SocketStream(PortStream):
    """The driver's port stream, here a plain TCP connection to the stand-in server.

    ``raw`` offers the socket itself, as the local agent's stream does (the
    proxy then splices); without it the proxy pumps through read and write,
    as for Kubernetes' framed port-forward.
    """

    def __init__(self, port: int, *, raw: bool = False):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.raw = raw

    def raw_socket(self) -> socket.socket | None:
        return self.sock if self.raw else None

    def read(self, size: int = 65536) -> bytes:
        try:
            return self.sock.recv(size)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


BIG = 32 * 2**20


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", str(BIG))
            self.end_headers()
            chunk = b"x" * 2**20
            for _ in range(BIG // len(chunk)):
                self.wfile.write(chunk)
            return
        if self.path == "/slow":
            # Streams until cut: one line every 0.1 s.
            self.send_response(200)
            self.end_headers()
            with contextlib.suppress(OSError):
                for i in range(200):
                    self.wfile.write(f"{i}\n".encode())
                    self.wfile.flush()
                    time.sleep(0.1)
            return
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            data = self.rfile.read(5)  # an echo of raw bytes after the upgrade
            self.wfile.write(data[::-1])
            self.wfile.flush()
            return
        body = f"hello from {self.path}; cookie={self.headers.get('Cookie')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(params=["pumped", "spliced"])
def ports_proxy(request, upstream):
    """A proxy whose tokens live in ``state``: token -> (running, listening); both relays."""
    state: dict[str, dict] = {}

    def find(token):
        entry = state.get(token)
        if entry is None:
            return None
        return proxy.Target(
            token=token, job_id=12, workload="job-12", port=8888, running=entry["running"]
        )

    def still_open(tokens):
        return {t for t in tokens if t in state and state[t]["running"]}

    def connect(*, name, port):
        assert (name, port) == ("job-12", 8888)
        if not state["t0ken"].get("listening", True):
            raise DriverError("refused", code="connection_refused")
        return SocketStream(upstream, raw=request.param == "spliced")

    server = proxy.PortProxy(
        ("127.0.0.1", 0), domain=DOMAIN, find=find, still_open=still_open, connect=connect
    )
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    ).start()
    server.state = state
    yield server
    server.shutdown()
    server.server_close()


def _get(server, token: str, path: str = "/", **headers):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    conn.request("GET", path, headers={"Host": f"{token}.{DOMAIN}", **headers})
    response = conn.getresponse()
    return response.status, response.read(), conn


def test_the_proxy_relays_to_the_jobs_server_and_keeps_the_connection(ports_proxy):
    ports_proxy.state["t0ken"] = {"running": True}
    status, body, conn = _get(ports_proxy, "t0ken", "/lab?x=1")
    assert status == 200 and body.startswith(b"hello from /lab?x=1")
    # keep-alive: a second request on the same connection
    conn.request("GET", "/second", headers={"Host": f"t0ken.{DOMAIN}"})
    assert conn.getresponse().read().startswith(b"hello from /second")
    conn.close()


def test_unknown_tokens_and_other_hosts_are_404(ports_proxy):
    ports_proxy.state["t0ken"] = {"running": True}
    assert _get(ports_proxy, "nope")[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", ports_proxy.server_address[1], timeout=10)
    conn.request("GET", "/", headers={"Host": "t0ken.portal.example"})
    assert conn.getresponse().status == 404


def test_nothing_listening_yet_is_a_clear_page(ports_proxy):
    ports_proxy.state["t0ken"] = {"running": True, "listening": False}
    status, body, _ = _get(ports_proxy, "t0ken")
    assert status == 502
    assert b"Nothing is listening on port 8888 in job #12 yet" in body
    assert b"0.0.0.0" in body
    ports_proxy.state["t0ken"] = {"running": True}
    zh_status, zh_body, _ = _get(ports_proxy, "t0ken", **{"Accept-Language": "zh-CN"})
    assert zh_status == 200


def test_a_starting_job_says_so(ports_proxy):
    ports_proxy.state["t0ken"] = {"running": False}
    status, body, _ = _get(ports_proxy, "t0ken")
    assert status == 503 and b"#12" in body


def test_a_large_download_streams_through(ports_proxy):
    ports_proxy.state["t0ken"] = {"running": True}
    conn = http.client.HTTPConnection("127.0.0.1", ports_proxy.server_address[1], timeout=30)
    conn.request("GET", "/big", headers={"Host": f"t0ken.{DOMAIN}"})
    response = conn.getresponse()
    total = 0
    while chunk := response.read(2**20):
        total += len(chunk)
    assert total == BIG


def test_a_websocket_upgrade_passes_both_ways(ports_proxy):
    ports_proxy.state["t0ken"] = {"running": True}
    sock = socket.create_connection(("127.0.0.1", ports_proxy.server_address[1]), timeout=10)
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: t0ken.{DOMAIN}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101")
    sock.sendall(b"hello")
    echoed = head.split(b"\r\n\r\n", 1)[1]
    while len(echoed) < 5:
        echoed += sock.recv(16)
    assert echoed == b"olleh"
    sock.close()


def test_a_revoked_port_cuts_open_connections_within_a_second(ports_proxy):
    ports_proxy.state["t0ken"] = {"running": True}
    conn = http.client.HTTPConnection("127.0.0.1", ports_proxy.server_address[1], timeout=10)
    conn.request("GET", "/slow", headers={"Host": f"t0ken.{DOMAIN}"})
    response = conn.getresponse()
    assert response.fp.readline() == b"0\n"
    del ports_proxy.state["t0ken"]  # the port was removed, or the job ended
    revoked = time.monotonic()
    with contextlib.suppress(OSError, http.client.HTTPException):
        while response.fp.readline():
            pass
    assert time.monotonic() - revoked < 1.5
    assert _get(ports_proxy, "t0ken")[0] == 404


@pytest.mark.parametrize(
    ("host", "token"),
    [
        (f"abc123.{DOMAIN}", "abc123"),
        (f"ABC123.{DOMAIN.upper()}", "abc123"),
        (f"a.b.{DOMAIN}", None),
        (DOMAIN, None),
        ("abc123.evil.example", None),
        (f"abc-123.{DOMAIN}", None),
    ],
)
def test_only_a_plain_token_under_the_domain_is_a_token(host, token):
    assert proxy.token_from_host(host, DOMAIN) == token


def test_the_job_page_opens_lists_and_closes_ports(client, user, make_job):
    job = make_job(user, kind="shell")
    client.force_login(user)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "No port is open to the browser." in page
    assert "A dev job keeps billing until you delete it" in page
    client.post(f"/jobs/{job.pk}/ports/", {"port": "8888"})
    row = JobPort.objects.get(job=job, port=8888)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="{selectors.port_url(row)}"' in page and 'rel="noopener noreferrer"' in page
    refused = client.post(f"/jobs/{job.pk}/ports/", {"port": "80"}, follow=True)
    assert "between 1024 and 65535" in refused.content.decode()
    client.post(f"/jobs/{job.pk}/ports/8888/remove/")
    assert JobPort.objects.get(pk=row.pk).removed_at is not None


def test_the_launch_form_takes_ports(client, user, cards, catalog, driver, subscribe):
    subscribe(user, "basic", timezone.now())
    client.force_login(user)
    response = client.post(
        "/jobs/new/",
        {
            "kind": "run",
            "entry": "a.py",
            "gpu_type": "40g",
            "cards_per_worker": 1,
            "image": "python:3.12",
            "ports": "8888, 8188",
            "launch": "1",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    job_id = int(response["Location"].rstrip("/").split("/")[-1])
    assert sorted(JobPort.objects.filter(job_id=job_id).values_list("port", flat=True)) == [
        8188,
        8888,
    ]


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("portal.example.edu", "example.edu"),
        ("a.b.example.edu.cn", "example.edu.cn"),
        ("ports.example.co.uk", "example.co.uk"),
        ("aladdin-ports.net", "aladdin-ports.net"),
    ],
)
def test_the_registrable_domain_of_a_host(host, domain):
    from gpu_jobs.checks import registrable_domain

    assert registrable_domain(host) == domain
