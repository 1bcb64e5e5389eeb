"""Validation of job and configuration input (SPEC §7): messages a student understands."""

from __future__ import annotations

import posixpath
import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from aladdin.lib.errors import DomainError
from aladdin.workloads.models import Image

from .choices import JobKind

DEFAULT_IMAGE = "python:3.11"
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ARGS = 256
MAX_ENV = 200
MAX_PORTS = 8


class JobError(ValidationError, DomainError):
    """Bad input (with fields: 400) or an action not allowed now (409); the message is for the user."""

    error_code = "state_conflict"


class JobNotFound(DomainError):  # noqa: N818 - reads as the condition
    """Something of the user's job that does not exist (404, the API's not_found)."""

    http_status = 404
    error_code = "not_found"


def clean_path(value: str, *, field: str, must_be_under_root: bool) -> str:
    value = (value or "").strip()
    if "\x00" in value or "\n" in value:
        raise JobError({field: _("This path contains characters that are not allowed.")})
    if not value:
        return value
    if not value.startswith("/"):
        value = posixpath.join("/root", value)
    value = posixpath.normpath(value)
    if must_be_under_root and not (value == "/root" or value.startswith("/root/")):
        raise JobError(
            {field: _("Must be under /root (your storage), got %(path)s.") % {"path": value}}
        )
    return value


def clean_env(env: dict | None) -> dict[str, str]:
    env = env or {}
    if not isinstance(env, dict):
        raise JobError({"env": _("ENV must be NAME=value pairs.")})
    if len(env) > MAX_ENV:
        raise JobError({"env": _("At most %(n)s ENV variables.") % {"n": MAX_ENV}})
    clean = {}
    for key, value in env.items():
        key = str(key)
        if not ENV_KEY_RE.match(key):
            raise JobError(
                {
                    "env": _(
                        "%(key)s is not a valid variable name: use letters, digits and _, "
                        "not starting with a digit."
                    )
                    % {"key": key}
                }
            )
        clean[key] = "" if value is None else str(value)
    return clean


def clean_args(args) -> list[str]:
    if args is None:
        return []
    if isinstance(args, str):
        raise JobError({"args": _("Args must be a list of strings.")})
    args = [str(a) for a in args]
    if len(args) > MAX_ARGS:
        raise JobError({"args": _("At most %(n)s arguments.") % {"n": MAX_ARGS}})
    if any("\x00" in a for a in args):
        raise JobError({"args": _("Arguments may not contain NUL characters.")})
    return args


def clean_ports(ports) -> list[int]:
    ports = list(ports or [])
    if len(ports) > MAX_PORTS:
        raise JobError({"ports": _("At most %(n)s external ports.") % {"n": MAX_PORTS}})
    clean = []
    for port in ports:
        try:
            number = int(port)
        except (TypeError, ValueError):
            raise JobError(
                {"ports": _("%(port)s is not a port number.") % {"port": port}}
            ) from None
        if not 1024 <= number <= 65535:
            raise JobError(
                {"ports": _("Ports must be between 1024 and 65535, got %(port)s.") % {"port": port}}
            )
        if number not in clean:
            clean.append(number)
    return clean


def clean_image(image: str) -> str:
    image = (image or "").strip() or DEFAULT_IMAGE
    name, _sep, tag = image.partition(":")
    if not Image.objects.filter(name=name, tag=tag, is_active=True).exists():
        raise JobError({"image": _("%(image)s is not in the image catalog.") % {"image": image}})
    return image


def clean_entry(kind: str, entry: str, python_module: bool) -> str:
    entry = (entry or "").strip()
    if not entry:
        raise JobError({"entry": _("Say what to run: a Python file, a shell script or a module.")})
    if len(entry) > 1024 or "\x00" in entry or "\n" in entry:
        raise JobError({"entry": _("This entry is not a valid file or module name.")})
    if python_module:
        if kind not in (JobKind.RUN, JobKind.DEBUG):
            raise JobError(
                {"python_module": _("Only GPU Run and GPU Debug run a Python module (-m).")}
            )
        if not re.match(r"^[A-Za-z_][\w.]*$", entry):
            raise JobError(
                {"entry": _("%(entry)s is not a Python module name.") % {"entry": entry}}
            )
        return entry
    return clean_path(entry, field="entry", must_be_under_root=True)
