"""Fluxomail settings: one file, read from the environment.

Every variable is listed with its default in the README's configuration table. The small typed
helpers below fail loudly (ImproperlyConfigured) on a malformed value instead of guessing.
"""

import json
import os
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_origins(name: str) -> list[str]:
    """Comma-separated web origins (`scheme://host[:port]`, as browsers send `Origin`)."""
    origins = [origin.lower() for origin in env_list(name, [])]
    for origin in origins:
        url = urlsplit(origin)
        if url.scheme not in ("http", "https") or origin != f"{url.scheme}://{url.netloc}":
            raise ImproperlyConfigured(
                f"{name} must list origins such as https://app.example.com "
                f"(scheme and host, no path), got {origin!r}"
            )
    return origins


def env_json(name: str, default: dict) -> dict:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = json.loads(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a JSON object") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object")
    return value


# "production" switches DEBUG off by default and makes SECRET_KEY mandatory.
FLUXOMAIL_ENV = env_str("FLUXOMAIL_ENV", "development")
if FLUXOMAIL_ENV not in ("development", "production"):
    raise ImproperlyConfigured(
        f"FLUXOMAIL_ENV must be 'development' or 'production', got {FLUXOMAIL_ENV!r}"
    )
PRODUCTION = FLUXOMAIL_ENV == "production"

DEBUG = env_bool("DEBUG", not PRODUCTION)

DEVELOPMENT_SECRET_KEY = "insecure-development-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when FLUXOMAIL_ENV=production")
    SECRET_KEY = DEVELOPMENT_SECRET_KEY
if not DEBUG and SECRET_KEY == DEVELOPMENT_SECRET_KEY:
    # DEBUG off means real users; the development key is public (it is in this file).
    raise ImproperlyConfigured("DEBUG is off: set SECRET_KEY to a secret value of your own")

SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
if not SITE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"SITE_URL must start with http:// or https://, got {SITE_URL!r}")

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "fluxomail.apps.FluxomailAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "accounts",
    "contacts",
    "sends",
    "usage",
    "webhooks",
]

MIDDLEWARE = [
    "fluxomail.prometheus.PrometheusMiddleware",
    "fluxomail.middleware.RequestIdMiddleware",
    # Before anything that can answer (redirects, whitenoise, CommonMiddleware): a preflight is
    # answered here, without a key, and every API answer, errors included, gets the CORS headers.
    "corsheaders.middleware.CorsMiddleware",
    # After CORS (a preflight carries no version), before anything that answers an API request.
    "fluxomail.versioning.ApiVersionMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "fluxomail.urls"
WSGI_APPLICATION = "fluxomail.wsgi.application"
ASGI_APPLICATION = "fluxomail.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite file by default; PostgreSQL (or anything dj-database-url reads) when DATABASE_URL is set.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A busy timeout instead of "database is locked" under a few concurrent writers.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    DATABASES["default"]["CONN_MAX_AGE"] = 0
# The send path's raw SQL runs as server-side prepared statements on PostgreSQL
# (fluxomail/prepared.py); off behind a pooler that shares server connections between clients.
DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Shared counters (rate limits) live in the cache: Redis when REDIS_URL is set, so that every
# worker and host counts together; local memory otherwise (one process only).
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    _REDIS = {
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "flx"),
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", **_REDIS},
        # django-ratelimit's counters, one Redis round trip per count (fluxomail.throttling).
        "ratelimit": {"BACKEND": "fluxomail.throttling.RedisCounterCache", **_REDIS},
    }
    RATELIMIT_USE_CACHE = "ratelimit"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    RATELIMIT_USE_CACHE = "default"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/dashboard/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = not PRODUCTION
# Before `collectstatic` has run (development, tests) STATIC_ROOT does not exist; whitenoise
# serves from the finders then, and its warning about the missing folder is noise.
warnings.filterwarnings("ignore", message="No directory at")
# Raised by anymail's SendGrid webhook view on every request; the README says it once.
warnings.filterwarnings(
    "ignore", message="django-anymail has dropped official support for SendGrid"
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Security headers and cookies. Cookies are Secure whenever the site is served over https.
_HTTPS = SITE_URL.startswith("https://")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", _HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", _HTTPS)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# HSTS in production (https only): browsers refuse plain http to this host for that long.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# HSTS for subdomains and the preload list bind every other host of the domain: the operator's
# call (the two settings above), not this service's, so check --deploy does not insist on them.
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]
# Production redirects plain http to https (behind a proxy: set SECURE_PROXY_SSL_HEADER).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION and _HTTPS)
# How many reverse proxies in front append to X-Forwarded-For (0: clients connect directly);
# the login throttle counts per client address taken from there.
TRUSTED_PROXY_HOPS = env_int("TRUSTED_PROXY_HOPS", 0, minimum=0)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Email: console by default; SMTP when EMAIL_HOST is set; any backend path (django-anymail's ESP
# backends included) through EMAIL_BACKEND.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "sends.delivery.PooledSMTPBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are mutually exclusive")
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10.0, minimum=0.1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Fluxomail <no-reply@fluxomail.local>")
ANYMAIL = env_json("ANYMAIL", {})
# The ESPs' tracking webhooks (README "Provider webhooks"): basic auth with one of these
# "user:password" pairs (comma-separated, to rotate), and where anymail checks an ESP's own
# signature, that ESP's key. Any other anymail webhook setting goes in ANYMAIL.
_webhook_secrets = env_list("ANYMAIL_WEBHOOK_SECRET", [])
for _secret in _webhook_secrets:
    if ":" not in _secret:
        raise ImproperlyConfigured("ANYMAIL_WEBHOOK_SECRET must be user:password pairs")
if _webhook_secrets:
    ANYMAIL["WEBHOOK_SECRET"] = _webhook_secrets
for _name in ("MAILGUN_WEBHOOK_SIGNING_KEY", "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY"):
    if env_str(_name):
        ANYMAIL[_name] = env_str(_name)
# Without a secret the webhooks stay shut (404); an ESP backend in production without one would
# send mail whose outcomes never arrive, so that start fails instead.
if PRODUCTION and EMAIL_BACKEND.startswith("anymail.") and not ANYMAIL.get("WEBHOOK_SECRET"):
    raise ImproperlyConfigured(
        "ANYMAIL_WEBHOOK_SECRET must be set when FLUXOMAIL_ENV=production and EMAIL_BACKEND "
        "is a django-anymail ESP backend: the ESPs' tracking webhooks need it"
    )

# The send API's limits and rules (SPEC.md section 3).
SEND_MAX_CONTENT_BYTES = env_int("SEND_MAX_CONTENT_BYTES", 1_000_000, minimum=1)
SEND_MAX_ATTACHMENT_BYTES = env_int("SEND_MAX_ATTACHMENT_BYTES", 10_000_000, minimum=0)
# The whole request body: two 1 MB parts plus 10 MB of attachments in base64, with room to spare.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 16_000_000, minimum=1024)
# CSS inlining is skipped (HTML sent as written) above this bound on premailer's work, in
# microseconds of the development machine (sends.inline_cost.inline_work).
SEND_MAX_INLINE_WORK = env_int("SEND_MAX_INLINE_WORK", 150_000, minimum=0)
# The CSS inliner: premailer (the default) or css-inline (Rust, faster), under the same bound.
CSS_INLINER = env_str("CSS_INLINER", "premailer")
if CSS_INLINER not in ("premailer", "css-inline"):
    raise ImproperlyConfigured(f"CSS_INLINER must be premailer or css-inline, got {CSS_INLINER!r}")
IDEMPOTENCY_TTL_SECONDS = env_int("IDEMPOTENCY_TTL_SECONDS", 24 * 3600, minimum=60)
IDEMPOTENCY_LOCK_TIMEOUT_SECONDS = env_int("IDEMPOTENCY_LOCK_TIMEOUT_SECONDS", 60, minimum=1)
# What rate limiting does when the cache (Redis) cannot be reached: let requests through
# (fail open, the default: mail keeps flowing) or refuse them with 503 (fail closed).
RATELIMIT_FAIL_OPEN = env_bool("RATELIMIT_FAIL_OPEN", True)
# Usage counters are added up in each worker and written by a background thread this often
# (0: by every request itself; the development default, so that the dashboard is exact at once).
# API keys (with their organization) and policies are cached per worker this long (at most 1 s,
# fluxomail/hotcache.py): a revocation, a pause or a policy change takes effect within it.
HOT_CACHE_SECONDS = min(env_float("HOT_CACHE_SECONDS", 1.0, minimum=0.0), 1.0)
USAGE_FLUSH_SECONDS = env_float("USAGE_FLUSH_SECONDS", 1.0 if PRODUCTION else 0.0, minimum=0.0)
# Tracking: opens within this many seconds of sending are flagged as likely machine opens.
TRACKING_MACHINE_OPEN_SECONDS = env_int("TRACKING_MACHINE_OPEN_SECONDS", 2, minimum=0)
# Opens (and, apart, clicks) recorded per send and minute; the pixel and redirect answer anyway.
TRACKING_MAX_EVENTS_PER_MINUTE = env_int("TRACKING_MAX_EVENTS_PER_MINUTE", 20, minimum=1)

# Jobs (Celery, fluxomail/celery.py). A job's state is a row; the broker only says "look now",
# and the sweepers find what no message announced. Without CELERY_BROKER_URL the broker is
# kombu's filesystem transport in JOBS_DIR, so `make run` needs no extra service; production
# with several hosts points it at RabbitMQ (amqp://) or Redis (redis://).
JOBS_DIR = Path(env_str("JOBS_DIR", str(BASE_DIR / "var" / "jobs")))
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"


def filesystem_broker_options(jobs_dir: Path) -> dict:
    """kombu's filesystem transport on `jobs_dir`: one folder of messages, nothing kept."""
    queue = str(jobs_dir / "queue")
    return {
        "data_folder_in": queue,
        "data_folder_out": queue,
        "control_folder": str(jobs_dir / "control"),
        "store_processed": False,
        # An idle worker lists the folder 10 times a second (kombu's default: once), so a job
        # waits 0.1 s at most, and a worker busy at its prefetch limit takes the next at once.
        "polling_interval": 0.1,
    }


if CELERY_BROKER_URL == "filesystem://":
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(JOBS_DIR)
    # Remote control (celery inspect) needs a broadcast the file queue does not carry well.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_BEAT_SCHEDULE_FILENAME = str(JOBS_DIR / "beat-schedule")
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged after it ran, so a killed worker's task is delivered again; every task
# claims its row first, so running twice acts once.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Django's LOGGING (with the request id of every line) stays in charge in the worker too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A web request that publishes while the broker is down gives up quickly: the row is committed
# and a sweeper enqueues it later.
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0, minimum=0.1)
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# How often the sweepers look for due rows that no message announced (and for retries).
JOBS_SWEEP_SECONDS = env_float("JOBS_SWEEP_SECONDS", 15.0, minimum=0.1)
# Queued delivery (sends/queue.py): "sync" delivers in the request (the default), "queue"
# answers {"status": "queued"} and a worker delivers; a policy may override it.
DELIVERY_MODE = env_str("DELIVERY_MODE", "sync")
if DELIVERY_MODE not in ("sync", "queue"):
    raise ImproperlyConfigured(f"DELIVERY_MODE must be 'sync' or 'queue', got {DELIVERY_MODE!r}")
# Deferrals (SMTP 4xx) and connection failures are retried this long, then the send fails.
DELIVERY_RETRY_HOURS = env_float("DELIVERY_RETRY_HOURS", 24.0, minimum=0.0)
# The n-th retry waits base x 2^(n-1) (±20%), at most an hour.
DELIVERY_RETRY_BASE_SECONDS = env_float("DELIVERY_RETRY_BASE_SECONDS", 60.0, minimum=0.0)
# A worker owns a claimed job this long; a killed worker's job is taken up again after it.
DELIVERY_CLAIM_SECONDS = env_float("DELIVERY_CLAIM_SECONDS", 300.0, minimum=0.1)

# Message bodies (text, HTML, headers) are blanked this many days after sending.
RETENTION_DAYS = env_int("RETENTION_DAYS", 30, minimum=1)
# How often beat runs the purges (expired idempotency records, message bodies, webhook log).
JOBS_PURGE_SECONDS = env_float("JOBS_PURGE_SECONDS", 3600.0, minimum=0.1)
CELERY_BEAT_SCHEDULE = {
    "purge-idempotency": {"task": "sends.purge_idempotency", "schedule": JOBS_PURGE_SECONDS},
    "purge-bodies": {"task": "sends.purge_bodies", "schedule": JOBS_PURGE_SECONDS},
    "sweep-queued-sends": {"task": "sends.sweep_queued", "schedule": JOBS_SWEEP_SECONDS},
    "sweep-webhooks": {"task": "webhooks.sweep", "schedule": JOBS_SWEEP_SECONDS},
    "purge-webhook-log": {"task": "webhooks.purge", "schedule": JOBS_PURGE_SECONDS},
}

# Outbound webhooks (SPEC.md section 11, webhooks/delivery.py).
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1)
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 5, minimum=1)
# The n-th retry waits base x 3^(n-1) (±20%): 90 s gives 5 attempts over about an hour.
WEBHOOK_RETRY_BASE_SECONDS = env_float("WEBHOOK_RETRY_BASE_SECONDS", 90.0, minimum=0.0)
WEBHOOK_DISABLE_AFTER = env_int("WEBHOOK_DISABLE_AFTER", 20, minimum=1)
WEBHOOK_LOG_DAYS = env_int("WEBHOOK_LOG_DAYS", 30, minimum=1)
# How long the previous secret keeps signing after a rotation.
WEBHOOK_SECRET_OVERLAP_HOURS = env_float("WEBHOOK_SECRET_OVERLAP_HOURS", 24.0, minimum=0.0)
# How far behind the event log the sweeper's catch-up of lost fan-outs reads.
WEBHOOK_FANOUT_LAG_SECONDS = env_float("WEBHOOK_FANOUT_LAG_SECONDS", 60.0, minimum=0.0)
WEBHOOK_MAX_ENDPOINTS = env_int("WEBHOOK_MAX_ENDPOINTS", 20, minimum=1)
# Off in production: endpoints may not resolve to loopback, private, link-local or metadata
# addresses (checked at creation and at every attempt). On for self-hosters who need them.
WEBHOOK_ALLOW_PRIVATE_TARGETS = env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", not PRODUCTION)

# CORS (django-cors-headers, SPEC.md section 4) on the public API only, never on the admin,
# dashboard, tracking or unsubscribe pages. Keys travel in headers, never in cookies, so no
# credentials are allowed; the origins are named one by one (none by default).
CORS_URLS_REGEX = r"^/api/v1/"
CORS_ALLOWED_ORIGINS = env_origins("CORS_ALLOWED_ORIGINS")
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_METHODS = ["GET", "POST", "PATCH", "DELETE", "OPTIONS"]
CORS_ALLOW_HEADERS = [
    "Authorization",
    "x-api-key",
    "Content-Type",
    "Idempotency-Key",
    "X-Request-Id",
    "Fluxomail-Version",
]
CORS_EXPOSE_HEADERS = [
    "X-Request-Id",
    "Fluxomail-Request-Id",
    "Idempotency-Key",
    "Idempotency-Replayed",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit",
    "RateLimit-Policy",
    "Retry-After",
]
# Browsers cap it lower (Chromium: 2 hours); one preflight per origin and path that long.
CORS_PREFLIGHT_MAX_AGE = 86400

# The event stream (sends/stream.py): a comment line at least this often keeps idle
# connections open through proxies; one poll per process this often while anyone listens; ids
# are published once this much older than now (a commit takes far less), and this much of the
# past is re-read for events that committed later still; events queued per client before a
# client too slow to read them is disconnected (it resumes with Last-Event-ID); how often the
# open streams' keys are checked (revoked, expired, paused organization: the stream ends).
STREAM_PING_SECONDS = env_float("STREAM_PING_SECONDS", 10.0, minimum=0.01)
STREAM_POLL_SECONDS = env_float("STREAM_POLL_SECONDS", 0.25, minimum=0.01)
STREAM_SETTLE_SECONDS = env_float("STREAM_SETTLE_SECONDS", 0.3, minimum=0.0)
STREAM_LOOKBACK_SECONDS = env_float("STREAM_LOOKBACK_SECONDS", 5.0, minimum=0.0)
if STREAM_LOOKBACK_SECONDS < STREAM_SETTLE_SECONDS:
    raise ImproperlyConfigured("STREAM_LOOKBACK_SECONDS must be at least STREAM_SETTLE_SECONDS")
STREAM_QUEUE_MAX = env_int("STREAM_QUEUE_MAX", 1000, minimum=1)
STREAM_RECHECK_SECONDS = env_float("STREAM_RECHECK_SECONDS", 5.0, minimum=0.1)
# Streams of one process using the database at once (checks, catch-up pages): reconnecting
# clients come in bursts, PostgreSQL's connections are few.
STREAM_DB_CONNECTIONS = env_int("STREAM_DB_CONNECTIONS", 4, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.HasScopes"],
    "DEFAULT_PARSER_CLASSES": ["fluxomail.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "fluxomail.api.exception_handler",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "fluxomail.api.ContentNegotiation",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Fluxomail API",
    "DESCRIPTION": "A self-hostable transactional email API.",
    "VERSION": "2025-09-01",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "fluxomail.openapi.describe_send_global",
        "fluxomail.openapi.document_version_errors",
    ],
}

# /metrics (Prometheus) answers only with `Authorization: Bearer <METRICS_TOKEN>`; unset: 404.
METRICS_TOKEN = env_str("METRICS_TOKEN")

# Every log line carries the request id; tracebacks are left out unless LOG_TRACEBACKS is on,
# so that no SQL, parameter or secret in an exception's text ends up in the logs.

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL must be a logging level name, got {LOG_LEVEL!r}")
LOG_TRACEBACKS = env_bool("LOG_TRACEBACKS", False)
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "fluxomail.middleware.RequestIdLogFilter"},
        # Query strings may carry a key or token (the event stream's `token`): redacted
        # before any handler writes a record (fluxomail/log_redaction.py).
        "redact": {"()": "fluxomail.log_redaction.RedactSecrets"},
    },
    "formatters": {
        "plain": {
            "()": "fluxomail.middleware.SafeFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
        "json": {
            "()": "fluxomail.middleware.SafeJsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        # Django's own format for runserver's request lines.
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["redact", "request_id"],
            "formatter": LOG_FORMAT,
        },
        "django.server": {"class": "logging.StreamHandler", "formatter": "django.server"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO", "propagate": True},
        # runserver's request log ("GET /api/v1/events/stream?token=… 200"), as Django sets
        # it up, plus the redaction.
        "django.server": {
            "handlers": ["django.server"],
            "filters": ["redact"],
            "level": "INFO",
            "propagate": False,
        },
    },
}

if CELERY_BROKER_URL == "filesystem://":
    # kombu warns "No hostname was supplied" at each process's first publish to the file queue,
    # which has no host by design (make run's terminal would show it at every start).
    LOGGING["loggers"]["kombu.connection"] = {"level": "ERROR"}

# Admin and dashboard messages live in the session, never in a cookie: a new key's secret is
# shown once through a message.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
