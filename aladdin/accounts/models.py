from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _

from .choices import EducationStatus, Language
from .phone import normalize_phone


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, phone, password, **extra_fields):
        if not phone:
            raise ValueError("A phone number is required")
        user = self.model(phone=normalize_phone(phone), **extra_fields)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_user(self, phone, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(phone, password, **extra_fields)

    def create_superuser(self, phone, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        extra_fields.setdefault("phone_verified", True)
        return self._create_user(phone, password, **extra_fields)

    def get_by_natural_key(self, username):
        # Django's ModelBackend and createsuperuser pass the phone as typed.
        try:
            username = normalize_phone(username)
        except Exception:  # noqa: BLE001 - not a phone: let the lookup fail normally
            pass
        return super().get_by_natural_key(username)


class User(AbstractBaseUser, PermissionsMixin):
    """A person: a student or a member of staff, identified by a mainland phone number."""

    phone = models.CharField(
        _("phone number"),
        max_length=16,
        unique=True,
        help_text=_("E.164, mainland China only (+86…)."),
    )
    phone_verified = models.BooleanField(_("phone verified"), default=False)
    username = models.CharField(
        _("username"),
        max_length=150,
        unique=True,
        null=True,
        blank=True,
        validators=[UnicodeUsernameValidator()],
        help_text=_("Optional. Letters, digits and @/./+/-/_ only."),
    )
    is_staff = models.BooleanField(_("staff status"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)
    language = models.CharField(
        _("language"), max_length=10, choices=Language.choices, default=Language.ZH_HANS
    )
    education_status = models.CharField(
        _("education status"),
        max_length=10,
        choices=EducationStatus.choices,
        default=EducationStatus.NONE,
    )
    education_email = models.EmailField(_("education e-mail"), blank=True)
    education_verified_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("education verified at")
    )
    banned_at = models.DateTimeField(_("banned at"), null=True, blank=True)
    ban_reason = models.TextField(_("ban reason"), blank=True)
    last_activity_at = models.DateTimeField(
        _("last activity"),
        null=True,
        blank=True,
        help_text=_("Last web login, API call with the plugin's token, or SSH login."),
    )

    objects = UserManager()

    USERNAME_FIELD = "phone"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            models.UniqueConstraint(Lower("username"), name="accounts_user_username_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.username or self.phone

    @property
    def is_education(self) -> bool:
        return self.education_status != EducationStatus.NONE

    @property
    def is_banned(self) -> bool:
        return self.banned_at is not None


class BannedPhone(models.Model):
    """A phone number that can never register again (banned for mining)."""

    phone = models.CharField(max_length=16, unique=True, verbose_name=_("phone number"))
    user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, verbose_name=_("user")
    )
    reason = models.TextField(verbose_name=_("reason"))
    banned_at = models.DateTimeField(default=timezone.now, verbose_name=_("banned at"))
    banned_by = models.ForeignKey(
        User,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("banned by"),
    )

    class Meta:
        verbose_name = _("banned phone number")
        verbose_name_plural = _("banned phone numbers")

    def __str__(self) -> str:
        return self.phone


class StaffAction(models.Model):
    """Audit record of a staff action: who, when, what, why, before/after (SPEC §8).

    Append-only: written by :func:`aladdin.backoffice.audit.record` (or, for
    older call sites, created directly), never changed or deleted.
    """

    actor = models.ForeignKey(
        User, null=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("staff member")
    )
    target_user = models.ForeignKey(
        User,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="staff_actions",
        verbose_name=_("user"),
    )
    action = models.CharField(_("action"), max_length=64, db_index=True)
    reason = models.TextField(_("reason"), blank=True)
    # What was acted on, as text: the record outlives the row.
    subject_type = models.CharField(_("object type"), max_length=100, blank=True)
    subject_id = models.CharField(_("object id"), max_length=64, blank=True)
    subject_repr = models.CharField(_("object"), max_length=200, blank=True)
    before = models.JSONField(_("before"), default=dict, blank=True)
    after = models.JSONField(_("after"), default=dict, blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("staff action")
        verbose_name_plural = _("audit log")

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_id} at {self.created_at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise RuntimeError("the audit log is append-only: a staff action cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("the audit log is append-only: a staff action cannot be deleted")


class SmsMessage(models.Model):
    """Record of an SMS handed to the provider (never the code itself)."""

    phone = models.CharField(max_length=16, db_index=True, verbose_name=_("phone number"))
    purpose = models.CharField(max_length=32, verbose_name=_("purpose"))
    backend = models.CharField(max_length=16, verbose_name=_("backend"))
    ok = models.BooleanField(default=True, verbose_name=_("sent"))
    error = models.TextField(blank=True, verbose_name=_("error"))
    created_at = models.DateTimeField(
        default=timezone.now, db_index=True, verbose_name=_("created at")
    )

    class Meta:
        verbose_name = _("SMS message")
        verbose_name_plural = _("SMS messages")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.purpose} to {self.phone}"


class Notification(models.Model):
    """An in-app notice for one user (e.g. a storage retention warning); unread until read_at.

    Written as a message id and its parameters (``message``, ``params``) and
    rendered in the reader's language when shown (aladdin.accounts.notices).
    Rows written before that (``message`` is null) keep the text they were
    written in, in ``title`` and ``body``.
    """

    class Sms(models.TextChoices):
        NONE = "", _("not texted")
        QUEUED = "queued", _("queued")
        SENT = "sent", _("sent")
        REFUSED = "refused", _("refused by a limit")
        FAILED = "failed", _("failed")

    user = models.ForeignKey(
        User, on_delete=models.CASCADE, related_name="notifications", verbose_name=_("user")
    )
    kind = models.CharField(max_length=32, verbose_name=_("kind"))
    # Empty rather than null (one "no value", Django's convention for text).
    message = models.CharField(
        max_length=64,
        blank=True,
        default="",
        verbose_name=_("message"),
        help_text=_("Message id in aladdin.accounts.notices; empty for notices stored as text."),
    )
    params = models.JSONField(
        null=True,
        blank=True,
        verbose_name=_("parameters"),
        help_text=_("The message's parameters: amounts in µDCU or fen, times in ISO 8601."),
    )
    title = models.CharField(max_length=200, blank=True, verbose_name=_("title"))
    body = models.TextField(blank=True, verbose_name=_("text"))
    created_at = models.DateTimeField(
        default=timezone.now, db_index=True, verbose_name=_("created at")
    )
    read_at = models.DateTimeField(null=True, blank=True, verbose_name=_("read at"))
    sms = models.CharField(
        max_length=8, blank=True, default="", choices=Sms.choices, verbose_name=_("SMS")
    )

    class Meta:
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=("user", "read_at"), name="accounts_notif_user_read")]

    def __str__(self) -> str:
        return f"{self.kind} for {self.user_id}: {self.message or self.title}"

    @cached_property
    def rendered(self):
        """Title, body and link in the active language (aladdin.accounts.notices.render).

        Cached on the row: one request reads it in one language.
        """
        from .notices import render

        return render(self)


class NotificationPreference(models.Model):
    """Whether a user wants notices of one kind texted; no row means the kind's default (on)."""

    user = models.ForeignKey(
        User,
        on_delete=models.CASCADE,
        related_name="notification_preferences",
        verbose_name=_("user"),
    )
    kind = models.CharField(max_length=32, verbose_name=_("kind"))
    sms = models.BooleanField(default=True, verbose_name=_("by SMS"))

    class Meta:
        verbose_name = _("notification preference")
        verbose_name_plural = _("notification preferences")
        constraints = [
            models.UniqueConstraint(fields=("user", "kind"), name="accounts_notifpref_user_kind")
        ]

    def __str__(self) -> str:
        return f"{self.kind} for {self.user_id}: sms={self.sms}"
