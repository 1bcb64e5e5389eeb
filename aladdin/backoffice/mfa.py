"""The staff's second factor: TOTP through allauth's MFA (an authenticator app).

A staff member who has a TOTP authenticator, or every staff member when
``ALADDIN_STAFF_MFA_REQUIRED`` is on (the default whenever DEBUG is off),
passes the back office only after a code from the app in this session:

- ``/admin/login/``: phone or username and password; the user is not logged
  in yet, only remembered in the session as pending (for five minutes);
- ``/admin/login/code/``: the app's code, then the login;
- ``/admin/login/setup/``: where a second factor is required and the staff
  member has none yet, a QR code to scan and the first code, then the login.

A staff member who logged in on the students' page (with allauth's own MFA
step when they have an authenticator) counts as having passed it; one who
has none is sent to the setup step before any back-office page. A lost
phone: a superuser deletes the authenticator under MFA › Authenticators.
"""

from __future__ import annotations

import time
from urllib.parse import quote, urlencode

from allauth.account.internal.flows.login import get_authentication_records
from allauth.core import ratelimit
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret, validate_totp_code
from django.conf import settings
from django.http import HttpRequest

PENDING_KEY = "backoffice.mfa.pending"
PASSED_KEY = "backoffice.mfa.passed"
SECRET_KEY = "backoffice.mfa.secret"
PENDING_SECONDS = 300
ISSUER = "Aladdin"


def required() -> bool:
    return bool(getattr(settings, "ALADDIN_STAFF_MFA_REQUIRED", False))


def totp_of(user) -> Authenticator | None:
    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).first()


def needs_second_factor(user) -> bool:
    return user.is_staff and (required() or totp_of(user) is not None)


def passed(request: HttpRequest) -> bool:
    """Whether this session's user has given a second factor (or needs none)."""
    user = request.user
    # The session's mark first: every admin page asks, and it costs no query.
    if request.session.get(PASSED_KEY) == user.pk:
        return True
    if not needs_second_factor(user):
        return True
    # allauth's own MFA step on the students' login page.
    return any(r.get("method") == "mfa" for r in get_authentication_records(request))


def set_pending(request: HttpRequest, user) -> None:
    request.session[PENDING_KEY] = {
        "user": user.pk,
        "backend": getattr(user, "backend", settings.AUTHENTICATION_BACKENDS[0]),
        "at": time.time(),
    }


def pending_user(request: HttpRequest):
    """The staff member who gave the password and owes a code, or None."""
    from aladdin.accounts.models import User

    pending = request.session.get(PENDING_KEY)
    if not pending or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None
    user = User.objects.filter(pk=pending["user"], is_active=True, is_staff=True).first()
    if user is not None:
        user.backend = pending["backend"]
    return user


def mark_passed(request: HttpRequest, user) -> None:
    request.session.pop(PENDING_KEY, None)
    request.session.pop(SECRET_KEY, None)
    request.session[PASSED_KEY] = user.pk


def _attempt_allowed(request: HttpRequest, user) -> bool:
    # The same limit as a wrong password (allauth's "login_failed").
    return ratelimit.consume(request, action="login_failed", key=f"backoffice-mfa-{user.pk}")


def check_code(request: HttpRequest, user, code: str) -> str | None:
    """None when the code is right; otherwise why not (for the form)."""
    from django.utils.translation import gettext as _

    if not _attempt_allowed(request, user):
        return _("Too many wrong codes. Wait a few minutes and try again.")
    authenticator = totp_of(user)
    if authenticator is None or not TOTP(authenticator).validate_code(code):
        return _("That code is not right (or was already used). Enter the current one.")
    return None


def setup_secret(request: HttpRequest) -> str:
    secret = request.session.get(SECRET_KEY)
    if not secret:
        secret = request.session[SECRET_KEY] = generate_totp_secret()
    return secret


def setup_url(user, secret: str) -> str:
    label = quote(f"{ISSUER}:{user.username or user.phone}")
    return f"otpauth://totp/{label}?{urlencode({'secret': secret, 'issuer': ISSUER})}"


def setup_svg(url: str) -> str:
    import qrcode
    from qrcode.image.svg import SvgPathImage

    return qrcode.make(url, image_factory=SvgPathImage).to_string(encoding="unicode")


def activate(request: HttpRequest, user, code: str) -> str | None:
    """Enrol the app whose first code is ``code``; None when done, else why not."""
    from django.utils.translation import gettext as _

    if not _attempt_allowed(request, user):
        return _("Too many wrong codes. Wait a few minutes and try again.")
    secret = request.session.get(SECRET_KEY)
    if not secret or not validate_totp_code(secret, code):
        return _("That code is not right. Scan the QR code again and enter the current code.")
    if totp_of(user) is None:
        TOTP.activate(user, secret)
    return None
