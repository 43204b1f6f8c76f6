"""Settings for ETL Monitor: one module, driven by environment variables.

Defaults run on a fresh machine with nothing installed (SQLite under ``var/``,
a filesystem Celery broker, a file cache). Production turns ``DEBUG`` off, and
then the app refuses insecure defaults instead of silently running with them.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ETL_MONITOR_VAR_DIR", BASE_DIR / "var")).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()

# A development key only; with DEBUG off it is refused (see the check below).
DEV_SECRET_KEY = "dev-insecure-etl-monitor-key-do-not-use-in-production"  # noqa: S105

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Insecure defaults are collected, not raised here: the web server, the worker and the
# scheduler refuse to start with any of them (etl_monitor.checks.settings_refuse_insecure),
# and `check --deploy` reports them, while offline commands (makemigrations…) still run.
INSECURE_SETTINGS: list[str] = []
if not DEBUG:
    if SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        INSECURE_SETTINGS.append(
            "SECRET_KEY must be set to a long random value (50+ characters) when DEBUG is off "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    if not ALLOWED_HOSTS:
        INSECURE_SETTINGS.append("ALLOWED_HOSTS must be set when DEBUG is off.")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "simple_history",
    "axes",
    "etl_monitor",
    "loaders",
    "signals_app",
    "incidents",
    "oncall",
    "integrations",
    "operations",
    "onboarding",
]

MIDDLEWARE = [
    # Counts every request, probes included; then probes and scrapes, which reach a pod by its
    # address, are answered before the host check (etl_monitor.middleware.ProbeMiddleware).
    "etl_monitor.middleware.RequestMetricsMiddleware",
    "etl_monitor.middleware.ProbeMiddleware",
    "etl_monitor.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "etl_monitor.middleware.RejectNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Records the first loader page each person opens (the onboarding checklist's dashboards step).
    "onboarding.middleware.LoaderPageVisitMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its answer (etl_monitor.lockout).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "etl_monitor.urls"
WSGI_APPLICATION = "etl_monitor.wsgi.application"

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
                "integrations.context_processors.channel_health",
                "loaders.context_processors.pending_approvals",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'etl_monitor.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server, worker and beat read while one of them writes.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 20)
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    # Short OLTP queries pay more for PostgreSQL's JIT compilation than they gain.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("options", "-c jit=off")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and Celery -----------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# Redis away (etl_monitor.outage): no request waits longer than this for it, and after a failure a
# process does without it (no rate limit; tasks left to the sweeps) for REDIS_RETRY_SECONDS.
REDIS_TIMEOUT_SECONDS = env.float("REDIS_TIMEOUT_SECONDS", default=2.0)
REDIS_RETRY_SECONDS = env.float("REDIS_RETRY_SECONDS", default=5.0)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "etl-monitor",
            "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT_SECONDS, "socket_timeout": REDIS_TIMEOUT_SECONDS},
        }
    }
    # Another broker (RabbitMQ: amqp://…) may carry the tasks while Redis keeps the cache (docs/scaling.md).
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = (
        {"visibility_timeout": 3600} if CELERY_BROKER_URL.startswith("redis") else {}
    )
    if CELERY_BROKER_URL.startswith("redis://"):
        # kombu's Redis transport, with a worker that reconnects after a Redis restart instead of
        # exiting (etl_monitor/broker.py says why).
        CELERY_BROKER_TRANSPORT = "etl_monitor.broker:Transport"
else:
    # No Redis: a file cache and kombu's filesystem transport, both under var/,
    # so web, worker and beat share them without any service installed.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }
    BROKER_DIR = VAR_DIR / "broker"
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }

CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Keep Django's LOGGING (its formatter scrubs secrets) in the worker too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Auth -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"

# Login lockout (django-axes) on every password check: the admin and browsable-API logins and
# POST /api/v1/auth/token/. After LOGIN_FAILURE_LIMIT wrong passwords within LOGIN_LOCKOUT_MINUTES,
# the account (from any address) and the client address (for any account) are refused until
# LOGIN_LOCKOUT_MINUTES after the last failure, even with the right password.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out attempts before any password check
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
LOGIN_LOCKOUT_MINUTES = env.int("LOGIN_LOCKOUT_MINUTES", default=15)
# Reverse proxies in front of the app that append to X-Forwarded-For. 0: the client is REMOTE_ADDR
# and X-Forwarded-For is ignored (any client can write it); N: the Nth address from the right.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = dt.timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one reaching the limit locks
AXES_CLIENT_IP_CALLABLE = "etl_monitor.lockout.client_ip"
AXES_LOCKOUT_CALLABLE = "etl_monitor.lockout.lockout_response"
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"  # the database is shared by every web replica
AXES_DISABLE_ACCESS_LOG = True  # successful logins are not recorded (a table without retention)
AXES_VERBOSE = False  # no start-up banner in every process and management command
# People's API tokens (POST /api/v1/auth/token/) stop working this many days after they were issued.
API_TOKEN_TTL_DAYS = env.int("API_TOKEN_TTL_DAYS", default=90)

# --- I18N -----------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=VAR_DIR / "static")
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing root
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Security ---------------------------------------------------------------
# Secure by default when DEBUG is off; a TLS-terminating proxy in front sets
# X-Forwarded-Proto, which SECURE_PROXY_SSL_HEADER trusts.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS = env.list("SILENCED_SYSTEM_CHECKS", default=[])
if not SECURE_HSTS_PRELOAD:
    # Preloading is an irreversible, per-domain decision for the operator, not a default.
    SILENCED_SYSTEM_CHECKS.append("security.W021")

# --- Field encryption -------------------------------------------------------
# Comma-separated Fernet keys, newest first; older keys still decrypt (rotation).
FIELD_ENCRYPTION_KEY = env.list("FIELD_ENCRYPTION_KEY", default=[])
FIELD_KEY_MISSING = (
    "FIELD_ENCRYPTION_KEY must be set when DEBUG is off (generate one with: "
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')."
)
# Development only: without a key, one is derived from SECRET_KEY (fixed at start-up, so the
# test runner switching DEBUG off at run time does not change it).
FIELD_KEY_DERIVED_ALLOWED = DEBUG
if not DEBUG and not FIELD_ENCRYPTION_KEY:
    INSECURE_SETTINGS.append(FIELD_KEY_MISSING)

# --- REST API ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "etl_monitor.token_auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["etl_monitor.permissions.RoleModelPermissions"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": [],
    "EXCEPTION_HANDLER": "etl_monitor.api.exception_handler",
    # DRF's three parsers, refusing NUL and JSON nested too deep with a 400 (etl_monitor.request_input).
    "DEFAULT_PARSER_CLASSES": [
        "etl_monitor.parsers.SafeJSONParser",
        "etl_monitor.parsers.SafeFormParser",
        "etl_monitor.parsers.SafeMultiPartParser",
    ],
    # ?format= is ours (export xlsx|csv), not DRF's renderer override.
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_THROTTLE_RATES": {"auth-token": env.str("AUTH_TOKEN_THROTTLE", default="10/min")},
    # Throttles identify clients as the lockout does (X-Forwarded-For only behind trusted proxies).
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ETL Monitor API",
    "DESCRIPTION": (
        "Loader registry with four-eyes approval, run and signal ingestion, incidents. "
        "Authenticate with `Authorization: Token <key>` (POST /api/v1/auth/token/)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One name per choice set, so clients get readable enum types.
    "ENUM_NAME_OVERRIDES": {
        "SeverityEnum": "loaders.models.Severity",
        "RuleTypeEnum": "incidents.models.RuleType",
        "IncidentStatusEnum": "incidents.models.IncidentStatus",
        "VersionStateEnum": "loaders.models.VersionState",
        "RunStatusEnum": "signals_app.models.RunStatus",
        "IngestTokenKindEnum": "signals_app.models.IngestToken.Kind",
        "EventKindEnum": "incidents.models.EventKind",
        "ImportJobStatusEnum": "loaders.models.ImportJob.Status",
        "DeliveryStatusEnum": "integrations.models.DeliveryStatus",
        "DeliveryPurposeEnum": "integrations.models.Purpose",
        "ChannelKindEnum": "integrations.models.ChannelKind",
        "SourceKindEnum": "integrations.models.SourceKind",
        "SourceAuthEnum": "integrations.models.SourceAuth",
        "MetricTypeEnum": "signals_app.models.MetricType",
    },
}

# --- Loader import ---------------------------------------------------------------
LOADER_IMPORT_MAX_BYTES = env.int("LOADER_IMPORT_MAX_BYTES", default=10 * 1024 * 1024)
LOADER_IMPORT_MAX_ROWS = env.int("LOADER_IMPORT_MAX_ROWS", default=50_000)
# Files up to this many rows run inside the request; larger ones run as a background task with progress.
LOADER_IMPORT_SYNC_ROWS = env.int("LOADER_IMPORT_SYNC_ROWS", default=2_000)
LOADER_IMPORT_REPORT_ROWS = env.int("LOADER_IMPORT_REPORT_ROWS", default=1_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = LOADER_IMPORT_MAX_BYTES + 1024 * 1024

# --- Loader export ---------------------------------------------------------------
# Exports of up to this many loaders are written inside the request and downloaded at once (2.5 s
# on a busy 2-core server: no longer than a job's page would take to offer the file, and one click
# less); larger ones run as a background job with a progress page. The same number as imports.
LOADER_EXPORT_SYNC_ROWS = env.int("LOADER_EXPORT_SYNC_ROWS", default=2_000)
# A finished export's file is kept this long for its requester to download, then dropped.
LOADER_EXPORT_KEEP_HOURS = env.int("LOADER_EXPORT_KEEP_HOURS", default=24)

# --- Signal ingestion -------------------------------------------------------------
SIGNAL_BATCH_MAX = env.int("SIGNAL_BATCH_MAX", default=5_000)
SIGNAL_MAX_BODY_BYTES = env.int("SIGNAL_MAX_BODY_BYTES", default=5 * 1024 * 1024)
SIGNAL_FUTURE_TOLERANCE_SECONDS = env.int("SIGNAL_FUTURE_TOLERANCE_SECONDS", default=300)
SIGNAL_INGEST_RATE = env.str("SIGNAL_INGEST_RATE", default="3000/min")  # per ingest token (or user)
SIGNAL_RETENTION_DAYS = env.int("SIGNAL_RETENTION_DAYS", default=30)
PING_BODY_MAX_BYTES = env.int("PING_BODY_MAX_BYTES", default=10_000)
# A start ping repeated with the same body this soon (without ?rid=) is a retry: the same run.
PING_START_RETRY_SECONDS = env.int("PING_START_RETRY_SECONDS", default=10)
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")  # bearer token for /metrics; unset = loopback only
# The Celery worker's own metrics endpoint (what its tasks measure: ETL Monitor's calls to other
# services), served by the worker's main process over all its pool processes (docs/monitoring.md).
# 0 = off. Its multiprocess directory is emptied when the worker starts: one directory per worker
# on a host, never the web's (var/prometheus).
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=0)
WORKER_METRICS_ADDR = env.str("WORKER_METRICS_ADDR", default="127.0.0.1")
WORKER_METRICS_DIR = env.str("WORKER_METRICS_DIR", default=str(VAR_DIR / "prometheus-worker"))

# --- Incidents ------------------------------------------------------------------------
# A breach within this time after an incident resolved reopens it instead of opening a new one.
INCIDENT_REOPEN_SECONDS = env.int("INCIDENT_REOPEN_SECONDS", default=3600)
# This many open/resolve changes within the window mark an incident flapping (kept open, no spam).
INCIDENT_FLAP_THRESHOLD = env.int("INCIDENT_FLAP_THRESHOLD", default=4)
INCIDENT_FLAP_WINDOW_SECONDS = env.int("INCIDENT_FLAP_WINDOW_SECONDS", default=3600)
# While a condition lasts, its "fired again" timeline entry is written at most this often.
INCIDENT_REFIRE_EVENT_SECONDS = env.int("INCIDENT_REFIRE_EVENT_SECONDS", default=300)
# Rules evaluated together by one task (they share their reads and writes; 1 = a task per rule).
DETECTION_BATCH_SIZE = env.int("DETECTION_BATCH_SIZE", default=50)
# New incidents a rule opens at once (a storm) are written in chunks of this many: one atomic block
# and a handful of statements per chunk (states, incidents, silences, timeline, deliveries). 0 = each
# incident on its own path (a few dozen statements each), as before the bulk path.
INCIDENT_OPEN_CHUNK_SIZE = env.int("INCIDENT_OPEN_CHUNK_SIZE", default=500)
# Anomaly rules: a series seen for the first time is learned from this many days of its history;
# an anomaly that begins within this many minutes of a loader version's approval names that version.
ANOMALY_HISTORY_DAYS = env.int("ANOMALY_HISTORY_DAYS", default=14)
ANOMALY_APPROVAL_NOTE_MINUTES = env.int("ANOMALY_APPROVAL_NOTE_MINUTES", default=1440)
# A backtest ("what would this rule have opened over N days") evaluates the rule at most this many
# times: over a long span a short interval is stretched to fit (and the result says so).
BACKTEST_MAX_EVALUATIONS = env.int("BACKTEST_MAX_EVALUATIONS", default=3000)
# A backtest up to this size ((loaders in scope + 40) × evaluations: incidents.backtest.backtest_size)
# runs while the user waits, about 2 s at most as measured; a bigger one runs on the worker as a job
# (a request must stay well under WEB_TIMEOUT).
BACKTEST_INLINE_MAX = env.int("BACKTEST_INLINE_MAX", default=30_000)
# Finished backtest jobs (and their results) are deleted this many days after they ended; one
# queued or running for longer than BACKTEST_JOB_STALE_MINUTES is failed (its worker lost it).
BACKTEST_JOB_KEEP_DAYS = env.int("BACKTEST_JOB_KEEP_DAYS", default=3)
BACKTEST_JOB_STALE_MINUTES = env.int("BACKTEST_JOB_STALE_MINUTES", default=60)
# A detection task not started within this time is dropped (the tick or the cycle enqueues it again).
DETECTION_TASK_EXPIRES_SECONDS = env.int("DETECTION_TASK_EXPIRES_SECONDS", default=120)

# --- On-call paging (SMS and voice) -------------------------------------------------
# Twilio: every part is off until the account SID, auth token and sending number are set. The
# auth token also verifies Twilio's webhook signatures. TWILIO_API_BASE_URL points elsewhere in tests.
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
TWILIO_API_BASE_URL = env.str("TWILIO_API_BASE_URL", default="https://api.twilio.com")
# A second SMS provider, used when Twilio fails: a generic HTTP gateway (JSON POST, bearer token).
SMS_GATEWAY_URL = env.str("SMS_GATEWAY_URL", default="")
SMS_GATEWAY_TOKEN = env.str("SMS_GATEWAY_TOKEN", default="")
# At most one SMS per person per this many seconds: pages in between are batched into the next one.
PAGE_MIN_INTERVAL_SECONDS = env.int("PAGE_MIN_INTERVAL_SECONDS", default=60)
# A page (SMS or call) may be answered (reply code, key press) this long after it was sent; Twilio
# webhook receipts (replay protection) are kept twice as long.
PAGE_ANSWER_HOURS = env.int("PAGE_ANSWER_HOURS", default=24)
# A phone verification code is valid this long and allows this many wrong tries.
ONCALL_VERIFY_CODE_MINUTES = env.int("ONCALL_VERIFY_CODE_MINUTES", default=10)
ONCALL_VERIFY_MAX_ATTEMPTS = env.int("ONCALL_VERIFY_MAX_ATTEMPTS", default=5)

# --- Notifications -------------------------------------------------------------
NOTIFICATIONS_ENABLED = env.bool("NOTIFICATIONS_ENABLED", default=True)
# Where people open the app: links in emails and Slack buttons point here.
ETL_MONITOR_BASE_URL = env.str("ETL_MONITOR_BASE_URL", default="http://127.0.0.1:8000")
GRAFANA_URL = env.str("GRAFANA_URL", default="")
KIBANA_URL = env.str("KIBANA_URL", default="")
SLACK_BOT_TOKEN = env.str("SLACK_BOT_TOKEN", default="")
# Where approval news go on Slack ("" = email only): a Slack channel such as #etl-approvals (posted
# with the bot), or the name of an enabled Slack incoming-webhook channel of the platform.
APPROVALS_SLACK_CHANNEL = env.str("APPROVALS_SLACK_CHANNEL", default="")
SLACK_API_BASE_URL = env.str("SLACK_API_BASE_URL", default="https://slack.com/api/")
# Slack app interactivity (buttons, the /etl-monitor command): requests are refused unless signed
# with this secret (Basic Information → Signing Secret). Empty = buttons are links, the endpoints off.
SLACK_SIGNING_SECRET = env.str("SLACK_SIGNING_SECRET", default="")
NOTIFY_HTTP_TIMEOUT = env.float("NOTIFY_HTTP_TIMEOUT", default=10.0)  # Slack and webhooks, per request
# Deliveries sent by one task (they share their bookkeeping), and HTTP sends in parallel per task.
NOTIFY_BATCH_SIZE = env.int("NOTIFY_BATCH_SIZE", default=100)
NOTIFY_SEND_THREADS = env.int("NOTIFY_SEND_THREADS", default=8)
NOTIFY_SMTP_CONNECTIONS = env.int("NOTIFY_SMTP_CONNECTIONS", default=4)  # per task, for a batch of emails
NOTIFY_MAX_ATTEMPTS = env.int("NOTIFY_MAX_ATTEMPTS", default=8)  # then GAVE_UP (an admin may retry)
# A delivery whose last failure was a rate limit (HTTP 429: "slow down", not "broken") may use more.
NOTIFY_MAX_ATTEMPTS_RATE_LIMITED = env.int("NOTIFY_MAX_ATTEMPTS_RATE_LIMITED", default=30)
NOTIFY_BACKOFF_BASE_SECONDS = env.float("NOTIFY_BACKOFF_BASE_SECONDS", default=5.0)
NOTIFY_BACKOFF_MAX_SECONDS = env.float("NOTIFY_BACKOFF_MAX_SECONDS", default=900.0)
# A delivery SENDING for longer than this is taken back by the sweep (its worker died).
NOTIFY_LEASE_SECONDS = env.int("NOTIFY_LEASE_SECONDS", default=120)
# A due delivery this late was not picked up by its task: the sweep enqueues it again.
NOTIFY_SWEEP_GRACE_SECONDS = env.int("NOTIFY_SWEEP_GRACE_SECONDS", default=30)

# --- Data sources (defaults for the sources named "prometheus" and "elasticsearch") -------
PROMETHEUS_URL = env.str("PROMETHEUS_URL", default="")
ELASTICSEARCH_URL = env.str("ELASTICSEARCH_URL", default="")
ELASTICSEARCH_INDEX = env.str("ELASTICSEARCH_INDEX", default="logs-*")
# The severity of a source's one "data source unreachable" incident.
SOURCE_UNREACHABLE_SEVERITY = env.str("SOURCE_UNREACHABLE_SEVERITY", default="HIGH").strip().upper()
# Statistics capture: the bucket every capture definition stores one value per key for.
CAPTURE_BUCKET_SECONDS = env.int("CAPTURE_BUCKET_SECONDS", default=300)

# --- Alertmanager (inbound webhook; off until the token is set) ---------------------------
ALERTMANAGER_WEBHOOK_TOKEN = env.str("ALERTMANAGER_WEBHOOK_TOKEN", default="")
# The ``severity`` label's value → our severity (case-insensitive); others take the default.
ALERTMANAGER_SEVERITY_MAP = env.dict(
    "ALERTMANAGER_SEVERITY_MAP",
    default={
        "critical": "CRITICAL",
        "page": "CRITICAL",
        "high": "HIGH",
        "error": "HIGH",
        "major": "HIGH",
        "warning": "MEDIUM",
        "medium": "MEDIUM",
        "minor": "LOW",
        "low": "LOW",
        "info": "LOW",
    },
)
ALERTMANAGER_DEFAULT_SEVERITY = env.str("ALERTMANAGER_DEFAULT_SEVERITY", default="MEDIUM").strip().upper()
# Alerts one post may carry (more: 413); Alertmanager's ``max_alerts`` keeps a receiver within it.
ALERTMANAGER_MAX_ALERTS = env.int("ALERTMANAGER_MAX_ALERTS", default=200)

# --- Jira (off until JIRA_ENABLED) ------------------------------------------------------
JIRA_ENABLED = env.bool("JIRA_ENABLED", default=False)
JIRA_BASE_URL = env.str("JIRA_BASE_URL", default="")
JIRA_USERNAME = env.str("JIRA_USERNAME", default="")
JIRA_API_TOKEN = env.str("JIRA_API_TOKEN", default="")
# How ETL Monitor signs in: "basic" (Jira Cloud: JIRA_USERNAME's email + JIRA_API_TOKEN) or "token"
# (Jira Server / Data Center: a personal access token sent as a Bearer token — the jira channel's
# secret, stored encrypted, or else JIRA_PERSONAL_ACCESS_TOKEN).
JIRA_AUTH = env.str("JIRA_AUTH", default="basic").strip().lower()
JIRA_PERSONAL_ACCESS_TOKEN = env.str("JIRA_PERSONAL_ACCESS_TOKEN", default="")
JIRA_PROJECT = env.str("JIRA_PROJECT", default="")
JIRA_WEBHOOK_SECRET = env.str("JIRA_WEBHOOK_SECRET", default="")
# Replay protection: an event whose signed ``timestamp`` is older is refused (Jira Cloud retries a
# failed delivery for up to about 30 minutes); receipts are kept JIRA_WEBHOOK_RECEIPT_DAYS, and
# never less than this window.
JIRA_WEBHOOK_MAX_AGE_SECONDS = env.int("JIRA_WEBHOOK_MAX_AGE_SECONDS", default=1800)
JIRA_WEBHOOK_RECEIPT_DAYS = env.int("JIRA_WEBHOOK_RECEIPT_DAYS", default=30)
JIRA_TIMEOUT = env.float("JIRA_TIMEOUT", default=10.0)  # seconds per Jira request

# --- Branding -----------------------------------------------------------------
ETL_MONITOR_SITE_TITLE = env.str("ETL_MONITOR_SITE_TITLE", default="ETL Monitor")
ETL_MONITOR_SITE_HEADER = env.str("ETL_MONITOR_SITE_HEADER", default="ETL Monitor")

# --- Email (Django's EMAIL_* as-is) ---------------------------------------------
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if env.str("EMAIL_HOST", default="")
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="etl-monitor@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Logging ------------------------------------------------------------------
# plain: one readable line per record; json: one JSON object per line (log shipping), with the
# request log written by the app instead of gunicorn's access log.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain").strip().lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "etl_monitor.log_filters.RequestContextFilter"}},
    "formatters": {
        "plain": {
            "()": "etl_monitor.log_filters.ScrubbingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
        "json": {"()": "etl_monitor.log_filters.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Django's own handlers (its console while DEBUG, runserver's django.server) write request
        # paths unscrubbed, ping keys and ?secret= included: removed, so these records reach only
        # the root handler and its ScrubbingFormatter.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
    },
}
SIMPLE_HISTORY_REVERT_DISABLED = True  # reverting would bypass the approval services
