"""A workload's ENV: names users may use, the KEY=VALUE text they type, values stored encrypted.

ENV may hold secrets (API keys), so values are stored with Fernet under a key
derived from SECRET_KEY and only names are ever shown back (SPEC §6, §7).
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _

env_key = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]*$",
    _("A variable name is letters, digits and '_', not starting with a digit."),
)

# The HKDF info of every stored value, workshops' and jobs' alike. It names
# the app that first stored values: changing it makes every stored value
# unreadable.
_KEY_INFO = b"aladdin.workshops.env"


def _fernet() -> Fernet:
    # A key derived from SECRET_KEY: rotating SECRET_KEY makes stored values unreadable,
    # which the env var admin surfaces as "(unreadable)" rather than crashing.
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO).derive(
        settings.SECRET_KEY.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(raw))


def encrypt_value(plain: str) -> str:
    return _fernet().encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt_value(token: str) -> str:
    return _fernet().decrypt(token.encode("ascii")).decode("utf-8")


def parse_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and lines starting with # are skipped."""
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep:
            raise ValidationError(
                _("Line %(n)s: write KEY=VALUE."), params={"n": number}, code="env"
            )
        try:
            env_key(key)
        except ValidationError as exc:
            raise ValidationError(
                _("Line %(n)s: %(error)s"), params={"n": number, "error": exc.messages[0]}
            ) from exc
        env[key] = value
    return env
