"""HTTP to the portal: stored credentials, refreshed tokens, the API's errors.

Only the standard library (urllib): the CLI is installed on students' laptops.
"""

from __future__ import annotations

import contextlib
import json
import locale
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aladdin_cli import __version__

CLIENT_ID = "aladdin-ide-plugin"
DEFAULT_PORTAL = "http://127.0.0.1:8000"
# Refresh a little before the portal would refuse the token.
EXPIRY_MARGIN_S = 60
USER_AGENT = f"aladdin-cli/{__version__}"

try:  # POSIX: serialise refreshes between concurrent CLI processes.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class CliError(Exception):
    """A failure to report and exit with: ``exit_code`` 2 for refusals, 1 otherwise."""

    def __init__(
        self,
        detail: str,
        *,
        code: str = "error",
        status: int | None = None,
        fields: dict | None = None,
        exit_code: int = 1,
    ):
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.status = status
        self.fields = fields or {}
        self.exit_code = exit_code

    def as_json(self) -> dict:
        return {
            "code": self.code,
            "detail": self.detail,
            "fields": self.fields,
            "status": self.status,
        }


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "aladdin"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def accept_language() -> str | None:
    """The user's locale as an Accept-Language value ("zh-CN", "en-US"), or None.

    Read as gettext does (LANGUAGE, LC_ALL, LC_MESSAGES, LANG), then the
    platform's default; "C" and "POSIX" say nothing, so the portal's default applies.
    """
    candidates = [os.environ.get("LANGUAGE", "").split(":")[0]]
    candidates += [os.environ.get(name, "") for name in ("LC_ALL", "LC_MESSAGES", "LANG")]
    with contextlib.suppress(ValueError, TypeError):
        candidates.append(locale.getlocale()[0] or "")
    for value in candidates:
        tag = value.split(".")[0].split("@")[0].replace("_", "-")
        if tag and tag not in ("C", "POSIX"):
            return tag
    return None


def load_credentials() -> dict | None:
    try:
        return json.loads(credentials_path().read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {credentials_path()}: {exc}") from exc


def save_credentials(data: dict) -> Path:
    """Write the tokens readable by the user only: the directory 0700, the file 0600.

    Written to a temporary file created 0600 and renamed over the old one, so
    the tokens are never readable by others, not even for a moment, and a
    crash leaves the old file whole.
    """
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, credentials_path())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return credentials_path()


def delete_credentials() -> None:
    with contextlib.suppress(FileNotFoundError):
        credentials_path().unlink()


@contextlib.contextmanager
def _refresh_lock() -> Iterator[None]:
    """Hold the lock file while refreshing: a refresh token used twice revokes the login."""
    if fcntl is None:
        yield
        return
    config_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(config_dir() / ".refresh.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Response:
    def __init__(self, status: int, headers: Any, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _error_from(status: int, body: bytes, url: str) -> CliError:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and "detail" in data:
        detail = str(data.get("detail"))
        code = str(data.get("code") or "error")
        fields = data.get("fields") or {}
    elif isinstance(data, dict) and "error" in data:  # OAuth endpoints (RFC 6749 §5.2)
        code = str(data["error"])
        detail = str(data.get("error_description") or code)
        fields = {}
    else:
        code, fields = "error", {}
        detail = f"HTTP {status} from {url}"
    # 4xx: the portal understood and refused; 5xx: something broke.
    return CliError(
        detail, code=code, status=status, fields=fields, exit_code=2 if status < 500 else 1
    )


def http(
    method: str,
    url: str,
    *,
    data: dict | None = None,
    form: dict | None = None,
    raw: bytes | None = None,
    headers: dict | None = None,
    timeout: float = 30,
) -> Response:
    """One request; an error answer raises CliError with the portal's code and detail."""
    body = None
    all_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    language = accept_language()
    if language:
        all_headers["Accept-Language"] = language
    if data is not None:
        body = json.dumps(data).encode()
        all_headers["Content-Type"] = "application/json"
    elif form is not None:
        body = urllib.parse.urlencode(form).encode()
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif raw is not None:
        body = raw
        all_headers["Content-Type"] = "application/octet-stream"
    all_headers.update(headers or {})
    request = urllib.request.Request(url, data=body, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Response(response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        raise _error_from(exc.code, exc.read(), url) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot reach {url}: {reason}", code="unreachable") from None


class Portal:
    """The logged-in portal: API calls with a bearer token refreshed as needed."""

    def __init__(self, portal_override: str | None = None):
        creds = load_credentials()
        if not creds or not creds.get("refresh_token"):
            raise CliError(
                "not logged in: run `aladdin login` first", code="not_logged_in", exit_code=2
            )
        if portal_override and portal_override.rstrip("/") != creds.get("portal"):
            raise CliError(
                f"logged in to {creds.get('portal')}, not {portal_override}: "
                f"run `aladdin login --portal {portal_override}`",
                code="not_logged_in",
                exit_code=2,
            )
        self.creds = creds
        self.url = creds["portal"]

    # --- tokens ----------------------------------------------------------------

    def _refresh(self) -> None:
        used = self.creds["refresh_token"]
        with _refresh_lock():
            stored = load_credentials() or {}
            if stored.get("refresh_token") and stored["refresh_token"] != used:
                # Another aladdin process refreshed meanwhile: its tokens are the live ones.
                self.creds = stored
                if stored.get("expires_at", 0) > time.time() + EXPIRY_MARGIN_S:
                    return
                used = stored["refresh_token"]
            try:
                answer = http(
                    "POST",
                    f"{self.url}/o/token/",
                    form={
                        "grant_type": "refresh_token",
                        "refresh_token": used,
                        "client_id": CLIENT_ID,
                    },
                ).json()
            except CliError as exc:
                if exc.status in (400, 401):
                    raise CliError(
                        "your login has expired or was revoked: run `aladdin login` again",
                        code="not_logged_in",
                        status=exc.status,
                        exit_code=2,
                    ) from None
                raise
            self.creds = {**self.creds, **token_fields(answer)}
            save_credentials(self.creds)

    def access_token(self) -> str:
        if self.creds.get("expires_at", 0) <= time.time() + EXPIRY_MARGIN_S:
            self._refresh()
        return self.creds["access_token"]

    # --- API -------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        data: dict | None = None,
        raw: bytes | None = None,
        params: dict | None = None,
        headers: dict | None = None,
    ) -> Response:
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        for attempt in (1, 2):
            auth = {"Authorization": f"Bearer {self.access_token()}", **(headers or {})}
            try:
                return http(method, url, data=data, raw=raw, headers=auth, timeout=120)
            except CliError as exc:
                # Revoked or expired early (clock skew): one refresh, then give up.
                if exc.status == 401 and attempt == 1:
                    self._refresh()
                    continue
                raise
        raise AssertionError("unreachable")

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None).json()

    def post(self, path: str, data: dict | None = None, **kwargs: Any) -> Any:
        return self.request("POST", path, data=data if data is not None else {}, **kwargs).json()

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path).json()

    def all_pages(self, path: str, **params: Any) -> list:
        """Every row of a paginated list, following ``next``."""
        page = self.get(path, page_size=200, **params)
        rows = list(page["results"])
        while page.get("next"):
            nxt = urllib.parse.urlparse(page["next"])
            query = dict(urllib.parse.parse_qsl(nxt.query))
            page = self.get(nxt.path, **query)
            rows.extend(page["results"])
        return rows


def token_fields(answer: dict) -> dict:
    """What to store of a token endpoint's answer."""
    return {
        "access_token": answer["access_token"],
        "refresh_token": answer["refresh_token"],
        "expires_at": int(time.time()) + int(answer.get("expires_in", 3600)),
        "scope": answer.get("scope", ""),
    }
