"""Keeps secrets out of the web server's access log.

The web servers write every request's target, query string included, to
their access log: daphne (``make run``) to stdout, uvicorn (production,
deploy/systemd) through the ``uvicorn.access`` logger, and its websocket
lines through ``uvicorn.error``. The portal accepts tokens only in the
Authorization header (aladdin.accounts.api_auth), but a client that puts one in
the URL anyway (a bug, a hand-written curl, an old plugin) is refused *after*
the request line was read: without this, the log would keep a live token.
So the values of the parameters below are replaced before a line is written.
daphne's websocket lines carry no query string (it logs only their path).
"""

from __future__ import annotations

import logging
from urllib.parse import unquote_plus

# OAuth 2.0 secrets (RFC 6749, 6750, 7009, 7636) and the obvious others.
SECRET_PARAMETERS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "code",
        "code_verifier",
        "client_secret",
        "password",
    }
)
REDACTED = "[redacted]"


def redact_target(target: str) -> str:
    """``target`` (path and query) with the values of secret parameters replaced."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    items = []
    for item in query.split("&"):
        name, eq, _value = item.partition("=")
        if eq and unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
            item = f"{name}={REDACTED}"
        items.append(item)
    return f"{path}?{'&'.join(items)}"


def redact_request_line(line: str) -> str:
    """``"GET /path?query"`` (daphne's request field) with secrets redacted."""
    method, sep, target = line.partition(" ")
    return f"{method}{sep}{redact_target(target)}" if sep else redact_target(line)


class RedactSecretsFilter(logging.Filter):
    """Redacts secret query parameters in a record's string arguments (uvicorn's targets)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_target(arg) if isinstance(arg, str) and "?" in arg else arg
                for arg in record.args
            )
        return True


# uvicorn's access lines, and its websocket lines ("WebSocket /path?query").
UVICORN_LOGGERS = ("uvicorn.access", "uvicorn.error")


def install_access_log_redaction() -> None:
    """Redact secrets in daphne's and uvicorn's access logs; idempotent.

    aladdin.asgi calls this on import, which both servers do before they
    serve a request (uvicorn has configured its loggers by then, so the
    filters added here stay).
    """
    _install_daphne_redaction()
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecretsFilter) for f in logger.filters):
            logger.addFilter(RedactSecretsFilter())


def _install_daphne_redaction() -> None:
    """Make daphne's access log redact secrets; a no-op without daphne.

    daphne has no option or hook for its access log format (``--access-log``
    only picks the file), and its command line creates the logger itself, so
    the method that writes each line is wrapped.
    """
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:
        return
    if getattr(AccessLogGenerator.write_entry, "redacts_secrets", False):
        return
    write_entry = AccessLogGenerator.write_entry

    def redacting_write_entry(self, host, date, request, *args, **kwargs):
        return write_entry(self, host, date, redact_request_line(request), *args, **kwargs)

    redacting_write_entry.redacts_secrets = True
    AccessLogGenerator.write_entry = redacting_write_entry
