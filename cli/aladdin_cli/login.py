"""`aladdin login`: OAuth 2.0 authorization code + PKCE through a loopback redirect (RFC 8252).

A one-shot HTTP listener on 127.0.0.1 and a port the system picks receives
the browser's redirect with the code; the portal's IDE client accepts
``http://127.0.0.1:<any port>/callback``. The code is worthless without the
verifier, which never leaves this process.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import queue
import secrets
import sys
import threading
import urllib.parse
import webbrowser
from http.server import BaseHTTPRequestHandler, HTTPServer

from aladdin_cli.client import CLIENT_ID, CliError, http, save_credentials, token_fields

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Aladdin</title></head>
<body style="font-family:sans-serif;margin:4em"><h1>{title}</h1><p>{text}</p></body></html>"""


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) as RFC 7636 §4.1–4.2 define them."""
    verifier = secrets.token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-]
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class _Listener(HTTPServer):
    """Answers GET /callback once: its query goes to ``results``; other paths are 404."""

    def __init__(self, port: int, state: str):
        self.state = state
        self.results: queue.Queue[dict[str, str]] = queue.Queue()
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Listener

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urllib.parse.urlparse(self.path)
        if url.path != "/callback":
            self.send_error(404)
            return
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        status = 200
        if query.get("state") != self.server.state:
            # Not the answer to this terminal's request (a stale tab, another
            # page sending the browser here): ignored, the login goes on waiting.
            status, title = 400, "Login failed"
            text = "This is not the login your terminal is waiting for. Start it again there."
        elif "code" in query:
            title, text = "Logged in", "You can close this tab and go back to the terminal."
        else:
            title = "Login failed"
            text = html.escape(query.get("error_description") or query.get("error") or "no code")
        body = PAGE.format(title=title, text=text).encode()
        if status == 200:
            # Before the page: once the browser shows "Logged in", the terminal
            # has the answer. login() shuts the listener down only after this
            # request is served, so the page is still written.
            self.server.results.put(query)
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # the terminal is the user's, not an access log


def _has_browser() -> bool:
    """False on a Linux machine without a display: a console browser would take the terminal."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def login(portal: str, *, open_browser: bool = True, port: int = 0, timeout: float = 300) -> dict:
    """Log in through the browser; store and return the credentials."""
    portal = portal.rstrip("/")
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    try:
        listener = _Listener(port, state)
    except OSError as exc:
        raise CliError(f"cannot listen on 127.0.0.1:{port}: {exc}") from None
    redirect_uri = f"http://127.0.0.1:{listener.server_address[1]}/callback"
    url = f"{portal}/o/authorize/?" + urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": redirect_uri,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
            "scope": "ide",
        }
    )
    thread = threading.Thread(target=listener.serve_forever, daemon=True)
    thread.start()
    try:
        print(f"Open this URL in a browser to log in:\n\n  {url}\n", file=sys.stderr, flush=True)
        if open_browser and _has_browser():
            try:
                webbrowser.open(url)
            except Exception:  # noqa: BLE001 - no browser is fine: the URL is printed
                pass
        try:
            query = listener.results.get(timeout=timeout)
        except queue.Empty:
            raise CliError(f"no login within {int(timeout)} s", code="timeout") from None
    finally:
        listener.shutdown()
        listener.server_close()
    if "code" not in query:
        error = query.get("error", "error")
        raise CliError(query.get("error_description") or error, code=error, exit_code=2)
    answer = http(
        "POST",
        f"{portal}/o/token/",
        form={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": redirect_uri,
            "client_id": CLIENT_ID,
            "code_verifier": verifier,
        },
    ).json()
    creds = {"portal": portal, **token_fields(answer)}
    save_credentials(creds)
    return creds


def revoke(portal: str, token: str) -> None:
    http(
        "POST",
        f"{portal}/o/revoke_token/",
        form={"token": token, "client_id": CLIENT_ID},
    )
