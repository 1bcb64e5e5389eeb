"""Websocket refusals reach the client as close codes, and the pages act on them (issue 11).

Two halves:

- through the real daphne of `make run` (the ``portal`` fixture), with the
  ``websockets`` client: a refusal is an accepted handshake closed with its
  44xx code, not an HTTP 403 (which every client sees as a bare failure);
- the log viewer (static/js/job-logs.js) and the terminal
  (static/js/terminal.js) in Chromium, on the pages as the portal renders
  them, against a websocket mocked by Playwright (``route_web_socket``):
  a 44xx close says why and stops, an abnormal close reconnects.
"""

from __future__ import annotations

import mimetypes
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, REPO

pytestmark = pytest.mark.e2e

SITE = "http://portal.test"


# --- the real daphne ---------------------------------------------------------


def close_code(url: str, **options) -> int:
    """Open ``url``; the close code the server sends (fails on a refused handshake)."""
    with connect(url, open_timeout=10, **options) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None, "the server dropped the connection without a close"
    return closed.value.rcvd.code


def test_daphne_sends_4401_to_an_anonymous_client(portal):
    ws_url = portal.url.replace("http://", "ws://")

    assert close_code(f"{ws_url}/ws/jobs/1/logs/") == 4401
    assert close_code(f"{ws_url}/ws/jobs/1/debug/") == 4401
    assert close_code(f"{ws_url}/ws/workshops/1/terminal/", origin=portal.url) == 4401


def test_daphne_sends_4403_to_another_sites_page(portal):
    ws_url = portal.url.replace("http://", "ws://")

    assert close_code(f"{ws_url}/ws/whoami/", origin="http://evil.example") == 4403


# --- the pages' scripts ------------------------------------------------------


@pytest.fixture(scope="module")
def in_browser():
    """``in_browser(scenario)`` runs ``scenario(browser)`` in a thread of its own.

    Playwright's sync API leaves its event loop registered as running in the
    thread that drives it, and Django then refuses database calls there. The
    tests render pages with the ORM in the main thread, so Chromium is driven
    from another (one thread for the module: Playwright objects stay in the
    thread that made them).
    """
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make system-test-deps)")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
    held = {}

    def start():
        held["playwright"] = sync_playwright().start()
        held["browser"] = held["playwright"].chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )

    def stop():
        held["browser"].close()
        held["playwright"].stop()

    pool.submit(start).result()
    try:
        yield lambda scenario: pool.submit(scenario, held["browser"]).result()
    finally:
        pool.submit(stop).result()
        pool.shutdown()


UNDER_TEST = re.compile(r"/ws/(jobs|workshops)/\d+/(logs|terminal|debug)/")


class MockSockets:
    """A page serving ``html`` at ``path``, the repo's static files, and mocked websockets.

    Each log or terminal websocket the page opens is recorded (``urls``) and
    handed to ``on_open(route, index)``. The portal's other sockets of every
    page (the bell's /ws/notifications/, the live updates' /ws/live/) are
    mocked too but left open and silent: they are not what is under test.
    """

    def __init__(self, browser, path: str, html: str, on_open):
        self.urls: list[str] = []
        self.context = browser.new_context(base_url=SITE)
        self.page = self.context.new_page()
        self.page.route(f"{SITE}/**", lambda route: self._serve(route, path, html))

        def opened(ws):
            if not UNDER_TEST.search(ws.url):
                return  # open and silent
            self.urls.append(ws.url)
            on_open(ws, len(self.urls) - 1)

        self.page.route_web_socket(re.compile(r"^ws://portal\.test/ws/"), opened)
        self.page.goto(path)

    @staticmethod
    def _serve(route, path: str, html: str) -> None:
        url_path = route.request.url.removeprefix(SITE).split("?")[0]
        if url_path == path:
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)
            return
        if url_path.startswith("/static/"):
            file = REPO / "static" / url_path.removeprefix("/static/")
            if file.is_file():
                kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                route.fulfill(status=200, content_type=kind, body=file.read_bytes())
                return
        route.fulfill(status=404, body="")

    def close(self) -> None:
        self.context.close()


def rendered(user, path: str) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(path)
    assert response.status_code == 200, path
    return response.content.decode()


def wait_for(page, predicate, timeout: float = 10) -> None:
    # Playwright's sync API runs route handlers only while one of its calls
    # waits, so the wait is the page's, not time.sleep.
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(50)


def shots(page, name: str) -> None:
    """Full-page screenshots at 1280 px and 390 px under test-artifacts/e2e/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)


def message_of(page, selector: str) -> tuple[str, str, str]:
    """(data-state, its message in the markup, the text shown)."""
    return page.eval_on_selector(
        selector,
        """el => {
          const key = el.dataset.state;
          return [key, key ? (el.dataset[key] || "") : "", el.textContent];
        }""",
    )


@pytest.mark.parametrize(
    ("code", "key"),
    [(4401, "signedOut"), (4403, "forbidden"), (4404, "missing"), (4409, "notRunning")],
)
def test_the_log_viewer_says_why_and_stops_on_a_refusal(in_browser, user, make_job, code, key):
    job = make_job(user)
    path = f"/jobs/{job.pk}/"
    html = rendered(user, path)

    def scenario(browser):
        sockets = MockSockets(browser, path, html, lambda ws, _i: ws.close(code=code, reason="r"))
        try:
            page = sockets.page
            page.wait_for_function("document.getElementById('job-logs-note').dataset.state")
            # The first retry of a drop would come after 1 s: none may come.
            page.wait_for_timeout(2500)
            shots(page, f"websocket-refusal-logs-{code}")
            return len(sockets.urls), message_of(page, "#job-logs-note")
        finally:
            sockets.close()

    opened, (state, message, shown) = in_browser(scenario)

    assert opened == 1
    assert state == key and message and shown == message


def test_the_log_viewer_reconnects_from_its_offset_after_a_drop(in_browser, user, make_job):
    job = make_job(user)
    path = f"/jobs/{job.pk}/"
    html = rendered(user, path)

    def on_open(ws, index):
        if index == 0:
            ws.send('{"type": "log", "data": "hello", "offset": 5}')
            # The server went away without a close handshake.
            ws.close(code=1006)
        else:
            ws.send('{"type": "log", "data": " world", "offset": 11}')

    def scenario(browser):
        sockets = MockSockets(browser, path, html, on_open)
        try:
            page = sockets.page
            wait_for(page, lambda: len(sockets.urls) == 2)
            page.wait_for_function("document.getElementById('job-logs').textContent.length >= 11")
            shown = page.eval_on_selector("#job-logs", "el => el.textContent")
            return sockets.urls, shown, message_of(page, "#job-logs-note")[0]
        finally:
            sockets.close()

    urls, shown, note_state = in_browser(scenario)

    assert urls[0].endswith("?offset=0") and urls[1].endswith("?offset=5")
    assert shown == "hello world"
    assert note_state == ""  # "reconnecting" cleared once open again


@pytest.mark.parametrize(
    ("code", "key"),
    [(4401, "signedOut"), (4404, "missing"), (4409, "notRunning"), (1000, "closed")],
)
def test_the_terminal_says_why_and_stops_on_a_refusal_or_an_ended_shell(
    in_browser,
    user,
    make_job,
    code,
    key,
):
    job = make_job(user)
    path = f"/jobs/{job.pk}/terminal/"
    html = rendered(user, path)

    def scenario(browser):
        sockets = MockSockets(browser, path, html, lambda ws, _i: ws.close(code=code, reason="r"))
        try:
            page = sockets.page
            page.wait_for_function("document.getElementById('terminal-status').dataset.state")
            page.wait_for_timeout(2500)
            shots(page, f"websocket-refusal-terminal-{code}")
            return len(sockets.urls), message_of(page, "#terminal-status")
        finally:
            sockets.close()

    opened, (state, message, shown) = in_browser(scenario)

    assert opened == 1
    assert state == key and message and shown == message


def test_the_terminal_reconnects_after_a_drop(in_browser, user, make_job):
    job = make_job(user)
    path = f"/jobs/{job.pk}/terminal/"
    html = rendered(user, path)

    def on_open(ws, index):
        if index == 0:
            ws.close(code=1006)
        else:
            ws.send(b"$ ")

    def scenario(browser):
        sockets = MockSockets(browser, path, html, on_open)
        try:
            page = sockets.page
            wait_for(page, lambda: len(sockets.urls) == 2)
            page.wait_for_function(
                "document.getElementById('terminal-status').dataset.state === ''"
            )
            return sockets.urls
        finally:
            sockets.close()

    urls = in_browser(scenario)

    assert urls == [f"ws://portal.test/ws/jobs/{job.pk}/terminal/"] * 2
