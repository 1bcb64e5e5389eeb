"""The CLI's client without a portal: locale, token refresh between processes, exit codes.

A small loopback token endpoint stands in for /o/token/; the rest of the CLI
against the real portal is tests/e2e/test_cli.py.
"""

from __future__ import annotations

import json
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs

import pytest

from aladdin_cli import client
from aladdin_cli.main import _job_exit, main


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "aladdin"


@pytest.fixture
def token_endpoint():
    """/o/token/ answering each refresh with new tokens; ``seen`` lists the tokens used."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            used = form["refresh_token"][0]
            seen.append(used)
            if used.startswith("revoked"):
                status, body = 400, {"error": "invalid_grant"}
            else:
                n = len(seen)
                body = {"access_token": f"a{n}", "refresh_token": f"r{n}", "expires_in": 3600}
                status = 200
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LANG": "zh_CN.UTF-8"}, "zh-CN"),
        ({"LANG": "en_US.UTF-8", "LC_ALL": "zh_TW.UTF-8"}, "zh-TW"),
        ({"LANGUAGE": "en_GB:zh_CN", "LANG": "zh_CN.UTF-8"}, "en-GB"),
        ({"LANG": "de_DE@euro"}, "de-DE"),
    ],
)
def test_accept_language_follows_the_locale_as_gettext_reads_it(monkeypatch, env, expected):
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert client.accept_language() == expected


def test_credentials_are_written_for_the_user_only_even_over_a_readable_file(config):
    config.mkdir(parents=True, mode=0o755)
    (config / "credentials.json").write_text("{}")
    (config / "credentials.json").chmod(0o644)

    client.save_credentials({"portal": "http://x", "refresh_token": "r"})

    assert stat.S_IMODE((config / "credentials.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) == 0o700
    assert [p.name for p in config.iterdir() if p.name.startswith(".credentials-")] == []


def test_a_second_process_uses_the_tokens_another_refreshed_instead_of_refreshing_again(
    config, token_endpoint
):
    # given two CLI processes that read the same expired tokens
    url, seen = token_endpoint
    client.save_credentials(
        {"portal": url, "access_token": "a0", "refresh_token": "r0", "expires_at": 0}
    )
    first, second = client.Portal(), client.Portal()

    # when both need an access token
    assert first.access_token() == "a1"
    token = second.access_token()

    # then the refresh token was used once (a second use would revoke the login)
    assert seen == ["r0"]
    assert token == "a1"
    stored = json.loads((config / "credentials.json").read_text())
    assert stored["refresh_token"] == "r1" and stored["expires_at"] > time.time()


def test_a_revoked_refresh_token_asks_to_log_in_again(config, token_endpoint, capsys):
    url, _seen = token_endpoint
    client.save_credentials(
        {"portal": url, "access_token": "a0", "refresh_token": "revoked", "expires_at": 0}
    )

    assert main(["whoami"]) == 2
    assert "aladdin login" in capsys.readouterr().err


def test_not_logged_in_is_a_refusal_with_a_json_error_for_scripts(config, capsys):
    assert main(["--json", "jobs", "ls"]) == 2
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["code"] == "not_logged_in"


@pytest.mark.parametrize(
    ("job", "code"),
    [
        ({"state": "succeeded", "exit_code": 0}, 0),
        ({"state": "failed", "exit_code": 3}, 3),
        ({"state": "failed", "exit_code": None}, 1),
        ({"state": "stopped", "exit_code": None}, 1),
    ],
)
def test_run_exits_with_the_jobs_code_or_1_when_it_ended_without_one(job, code):
    assert _job_exit(job) == code


def test_the_pkce_challenge_is_the_one_the_portal_checks():
    from aladdin.accounts.oauth import _s256
    from aladdin_cli.login import pkce_pair

    verifier, challenge = pkce_pair()

    assert 43 <= len(verifier) <= 128
    assert challenge == _s256(verifier)


def test_the_loopback_listener_takes_only_its_own_state_and_ignores_the_rest():
    import urllib.error
    import urllib.request

    from aladdin_cli.login import _Listener

    listener = _Listener(0, "our-state")
    thread = threading.Thread(target=listener.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{listener.server_address[1]}"
    try:
        for path, status in (
            ("/favicon.ico", 404),
            ("/callback?code=stolen&state=their-state", 400),
            ("/callback?code=stolen", 400),
        ):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=5)
            assert refused.value.code == status
        assert listener.results.empty()

        with urllib.request.urlopen(f"{base}/callback?code=c1&state=our-state", timeout=5) as r:
            assert r.status == 200 and b"Logged in" in r.read()
        assert listener.results.get_nowait() == {"code": "c1", "state": "our-state"}
    finally:
        listener.shutdown()
        listener.server_close()
