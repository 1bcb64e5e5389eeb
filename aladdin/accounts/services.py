"""Account writes: language, education status, bans, IDE tokens, activity, notices."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.sessions.models import Session
from django.core import signing
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from . import notices, selectors, sms
from .choices import EducationStatus
from .models import BannedPhone, Notification, NotificationPreference, StaffAction, User

logger = logging.getLogger(__name__)

EDU_SIGNING_SALT = "aladdin.accounts.education"
ACTIVITY_RESOLUTION_SECONDS = 300


def user_set_language(*, user: User, language: str) -> User:
    if language not in dict(settings.LANGUAGES):
        raise ValidationError(_("Unknown language."))
    if user.language != language:
        user.language = language
        user.save(update_fields=["language"])
    return user


def user_record_activity(*, user: User, at: datetime | None = None) -> None:
    """Note a web login, plugin API call or SSH login (restarts storage retention).

    Written at most every 5 minutes per user so a busy plugin does not turn
    every API call into a write.
    """
    at = at or timezone.now()
    threshold = at - timedelta(seconds=ACTIVITY_RESOLUTION_SECONDS)
    if user.last_activity_at is not None and user.last_activity_at >= threshold:
        return  # recent enough as loaded: no query at all on most API calls
    from django.db.models import Q

    User.objects.filter(pk=user.pk).filter(
        Q(last_activity_at__isnull=True) | Q(last_activity_at__lt=threshold)
    ).update(last_activity_at=at)


def is_education_email(email: str) -> bool:
    domain = email.rsplit("@", 1)[-1].strip().lower()
    for suffix in settings.EDUCATION_EMAIL_DOMAINS:
        suffix = suffix if suffix.startswith(".") else "." + suffix
        if ("." + domain).endswith(suffix):
            return True
    return False


EDU_MAILS_PER_DAY = 5


def _education_email_taken(*, user: User, email: str) -> bool:
    # One school address gives education prices to one account only;
    # otherwise one student could discount any number of accounts.
    return (
        User.objects.filter(education_email__iexact=email, education_status=EducationStatus.EMAIL)
        .exclude(pk=user.pk)
        .exists()
    )


def education_request_verification(*, user: User, email: str) -> None:
    """E-mail a signed link that proves the user reads ``email``."""
    email = email.strip().lower()
    if not is_education_email(email):
        raise ValidationError(
            _("%(email)s is not an education address. Use an address ending in %(domains)s.")
            % {"email": email, "domains": ", ".join(settings.EDUCATION_EMAIL_DOMAINS)}
        )
    if _education_email_taken(user=user, email=email):
        raise ValidationError(
            _("%(email)s already gives education prices to another account.") % {"email": email}
        )
    # A few links a day per account: the form must not become a way to
    # mail-bomb a school's addresses from our server.
    key = f"edu:mails:{user.pk}:{timezone.localdate().isoformat()}"
    cache.add(key, 0, timeout=2 * 24 * 3600)
    if cache.incr(key) > EDU_MAILS_PER_DAY:
        raise ValidationError(
            _("Too many confirmation e-mails were sent today. Please try again tomorrow.")
        )
    token = signing.dumps({"u": user.pk, "e": email}, salt=EDU_SIGNING_SALT)
    link = settings.SITE_URL + reverse("education_confirm", args=[token])
    send_mail(
        subject=_("Confirm your education e-mail for Aladdin"),
        message=_(
            "Open this link within 24 hours to confirm %(email)s and get education prices:\n\n%(link)s\n"
        )
        % {"email": email, "link": link},
        from_email=None,
        recipient_list=[email],
    )


@transaction.atomic
def education_confirm(*, user: User, token: str) -> User:
    try:
        data = signing.loads(
            token, salt=EDU_SIGNING_SALT, max_age=settings.EDUCATION_VERIFICATION_TTL_SECONDS
        )
    except signing.SignatureExpired:
        raise ValidationError(_("This link has expired. Ask for a new one.")) from None
    except signing.BadSignature:
        raise ValidationError(_("This link is not valid.")) from None
    if data.get("u") != user.pk:
        raise ValidationError(_("This link was sent to another account."))
    if _education_email_taken(user=user, email=data["e"]):
        raise ValidationError(
            _("%(email)s already gives education prices to another account.") % {"email": data["e"]}
        )
    user = User.objects.select_for_update().get(pk=user.pk)
    user.education_email = data["e"]
    user.education_verified_at = timezone.now()
    if user.education_status == EducationStatus.NONE:
        user.education_status = EducationStatus.EMAIL
    user.save(update_fields=["education_email", "education_verified_at", "education_status"])
    return user


@transaction.atomic
def education_set_by_staff(*, user: User, actor: User, approved: bool, reason: str) -> User:
    user = User.objects.select_for_update().get(pk=user.pk)
    if approved:
        user.education_status = EducationStatus.STAFF
        user.education_verified_at = timezone.now()
    else:
        user.education_status = EducationStatus.NONE
    user.save(update_fields=["education_status", "education_verified_at"])
    StaffAction.objects.create(
        actor=actor,
        target_user=user,
        action="education_approve" if approved else "education_revoke",
        reason=reason,
    )
    return user


def oauth_revoke_all(*, user: User) -> int:
    """Revoke every IDE token of the user (password change, ban). Returns how many."""
    from oauth2_provider.models import get_access_token_model, get_refresh_token_model

    count = 0
    for refresh in get_refresh_token_model().objects.filter(user=user, revoked__isnull=True):
        refresh.revoke()
        count += 1
    # Access tokens without a refresh token (none today, but be thorough).
    deleted, _ = get_access_token_model().objects.filter(user=user).delete()
    return count + deleted


# Access a user holds through other apps (SSH keys, in workshops): revoked
# with the IDE tokens on a ban or a password reset by staff. Each app
# registers its revoker from its AppConfig.ready, so accounts never imports
# the apps above it (DESIGN: dependency direction).
AccessRevoker = Callable[..., object]
_access_revokers: list[AccessRevoker] = []


def register_access_revoker(revoker: AccessRevoker) -> AccessRevoker:
    """Add ``revoker(*, user)`` to what :func:`user_access_revoke_all` revokes. Idempotent."""
    if revoker not in _access_revokers:
        _access_revokers.append(revoker)
    return revoker


def user_access_revoke_all(*, user: User) -> None:
    """Revoke every credential of ``user``: IDE tokens and what the apps registered."""
    oauth_revoke_all(user=user)
    for revoker in _access_revokers:
        revoker(user=user)


@transaction.atomic
def user_password_set_by_staff(*, user: User, actor: User | None, password: str | None) -> User:
    """A password reset by staff (back office): new password, every credential revoked.

    ``password`` None disables password login. Whoever knew the old password
    may have planted an SSH key or connected an IDE; the reset takes those
    away too, and logs the user out.
    """
    user = User.objects.select_for_update().get(pk=user.pk)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.save(update_fields=["password"])
    user_access_revoke_all(user=user)
    _sessions_delete(user=user)
    StaffAction.objects.create(
        actor=actor, target_user=user, action="password_reset", reason="back office"
    )
    return user


def ide_connection_revoke(*, user: User, refresh_token_id: int) -> None:
    """Revoke one connected IDE (one refresh-token family) of ``user``."""
    from oauth2_provider.models import get_refresh_token_model

    refresh = get_refresh_token_model().objects.get(
        pk=refresh_token_id, user=user, revoked__isnull=True
    )
    refresh.revoke()


def _sessions_delete(*, user: User) -> None:
    # Database sessions: find the user's by decoding (no index on user).
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            session.delete()


@transaction.atomic
def user_ban_apply(*, user: User, actor: User | None, reason: str) -> tuple[User, bool]:
    """Disable the account for good, block its phone, revoke every credential, end its sessions.

    The account part of a ban, without an audit record: the back office's
    ``user_ban_for_mining`` calls this, stops the workloads, forfeits the
    compute and writes ONE record for all of it. Returns the user and
    whether this call banned them (False when they already were: the date
    of the first ban stays). Safe to call twice.
    """
    if not reason.strip():
        raise ValidationError(_("A reason is required to ban an account."))
    user = User.objects.select_for_update().get(pk=user.pk)
    now = timezone.now()
    newly = user.banned_at is None
    user.banned_at = user.banned_at or now
    user.ban_reason = reason
    user.is_active = False
    user.save(update_fields=["banned_at", "ban_reason", "is_active"])
    BannedPhone.objects.update_or_create(
        phone=user.phone,
        defaults={"user": user, "reason": reason, "banned_at": user.banned_at, "banned_by": actor},
    )
    user_access_revoke_all(user=user)
    _sessions_delete(user=user)
    return user, newly


@transaction.atomic
def user_ban(*, user: User, actor: User | None, reason: str) -> User:
    """Ban the account alone (SPEC §1): disable for good, revoke access, block the phone.

    A ban for mining goes through the back office's ``user_ban_for_mining``,
    which also stops every workload and forfeits all compute (accounts
    cannot import the apps that own those: DESIGN, dependency direction).
    """
    user, _newly = user_ban_apply(user=user, actor=actor, reason=reason)
    StaffAction.objects.create(actor=actor, target_user=user, action="ban", reason=reason)
    return user


def notification_create(
    *, user: User, message: str, params: dict | None = None, at: datetime | None = None
) -> Notification:
    """Record a notice for ``user`` as message id + parameters (aladdin.accounts.notices).

    Rendered in the reader's language when shown. A message that must not be
    missed is also texted, after commit, unless the user turned its kind off;
    the bell of the user's open pages is told the new unread count.
    """
    entry = notices.MESSAGES[message]  # an unknown id is a bug in the caller
    sms_kind = notices.sms_kind_of(message)
    texted = sms_kind is not None and selectors.sms_wanted(user=user, kind=sms_kind)
    notification = Notification.objects.create(
        user=user,
        kind=entry.kind,
        message=message,
        params=params or {},
        created_at=at or timezone.now(),
        sms=Notification.Sms.QUEUED if texted else Notification.Sms.NONE,
    )
    if texted:
        from . import tasks

        transaction.on_commit(lambda: tasks.notification_sms.delay(notification.pk))
    _push_unread_count(user.pk)
    return notification


def notification_sms_send(*, notification_id: int) -> str:
    """Text a queued notice in the account's language, once; returns its SMS state.

    The claim (queued -> sent) comes first, so a task run twice texts once; a
    limit or a provider failure is recorded on the notice and never raised:
    the in-app notice stays either way.
    """
    claimed = Notification.objects.filter(pk=notification_id, sms=Notification.Sms.QUEUED).update(
        sms=Notification.Sms.SENT
    )
    if not claimed:
        return ""
    notification = Notification.objects.select_related("user").get(pk=notification_id)
    user = notification.user
    with translation.override(user.language or settings.LANGUAGE_CODE):
        text = notices.render_sms(notification)
    state = Notification.Sms.SENT
    try:
        if not text or not sms.send_alert(phone=user.phone, text=text, purpose=notification.kind):
            state = Notification.Sms.FAILED
    except sms.SmsLimitExceeded as exc:
        logger.warning("SMS notice %s to user %s refused (%s)", notification_id, user.pk, exc.scope)
        state = Notification.Sms.REFUSED
    except Exception:  # noqa: BLE001 - the provider's client can raise anything; the notice stays
        logger.exception("SMS notice %s to user %s failed", notification_id, user.pk)
        state = Notification.Sms.FAILED
    if state != Notification.Sms.SENT:
        Notification.objects.filter(pk=notification_id).update(sms=state)
    return state


def notification_mark_read(
    *, user: User, notification_id: int, at: datetime | None = None
) -> Notification:
    """Mark one of ``user``'s notices read; another user's id raises Notification.DoesNotExist."""
    notification = Notification.objects.get(pk=notification_id, user=user)
    if notification.read_at is None:
        notification.read_at = at or timezone.now()
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(
            read_at=notification.read_at
        )
        _push_unread_count(user.pk)
    return notification


def notifications_mark_all_read(*, user: User, at: datetime | None = None) -> int:
    """Mark every unread notice of ``user`` read; returns how many."""
    count = Notification.objects.filter(user=user, read_at__isnull=True).update(
        read_at=at or timezone.now()
    )
    if count:
        _push_unread_count(user.pk)
    return count


@transaction.atomic
def notification_preferences_set(*, user: User, sms_kinds: set[str]) -> None:
    """Text the kinds in ``sms_kinds`` and not the other SMS kinds (notices.SMS_KINDS)."""
    for kind in notices.SMS_KINDS:
        NotificationPreference.objects.update_or_create(
            user=user, kind=kind, defaults={"sms": kind in sms_kinds}
        )


def _push_unread_count(user_id: int) -> None:
    """After commit, tell the user's open pages (the bell) their unread count."""

    def push() -> None:
        from .consumers import push_unread_count

        push_unread_count(user_id)

    transaction.on_commit(push)
