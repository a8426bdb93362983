"""One settings module, read from the environment (see .env.example).

With nothing set, the server runs on laptop defaults: a SQLite file under
var/, the in-memory channel layer, Celery in eager mode and an embedded MQTT
broker. Production sets DATABASE_URL, REDIS_URL and MQTT_URL.
"""

import base64
import hashlib
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env("VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)
# The default only suits a laptop; production sets SECRET_KEY (checked by `manage.py check --deploy`).
SECRET_KEY = env("SECRET_KEY", default="insecure-dev-key-change-me-insecure-dev-key-change-me")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "lpr_server",
    "devices",
    "detections",
    "transport",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "lpr_server.middleware.RefuseNulInURL",  # sync and async: adds no thread hop
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last on purpose: WhiteNoise is synchronous only, and Django runs every middleware outside the innermost
    # synchronous one synchronously too, on the request's thread, instead of two thread hops per middleware.
    "whitenoise.middleware.WhiteNoiseMiddleware",
]

ROOT_URLCONF = "lpr_server.urls"
ASGI_APPLICATION = "lpr_server.asgi.application"

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

# --- storage -----------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'lpr.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool("DB_POOL", default=True):
    # Under ASGI every thread that touches the database (request executors, WebSocket writers, the MQTT bridge)
    # would keep a persistent connection of its own, and they pile up; a bounded pool per process shares a few.
    # Django requires CONN_MAX_AGE = 0 with a pool.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DB_POOL_MAX_SIZE", default=16),
        "timeout": env.float("DB_POOL_TIMEOUT_S", default=3.0),  # storage down: answer 503 within seconds
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django turns psycopg's prepared statements off for transaction-mode poolers; the ingest path's statements
    # (lpr_server/bulk.py, server-side binding) are few and repeated, and prepared they skip parsing and planning.
    # DB_PREPARE_THRESHOLD=0 turns it off again behind a pooler that cannot keep them (PgBouncer before 1.21).
    threshold = env.int("DB_PREPARE_THRESHOLD", default=5)
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = threshold or None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the dashboard read while the bridge writes; the timeout rides out short write locks.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "static")))
# Chart.js comes from the npm registry (package.json), installed by scripts/run and scripts/test, never committed.
STATICFILES_DIRS = [BASE_DIR / "static", ("vendor/chart.js", BASE_DIR / "node_modules" / "chart.js" / "dist")]
WHITENOISE_USE_FINDERS = True

# --- Redis: channel layer and Celery ------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "transport.channel_layer.ResilientRedisChannelLayer",  # rides out a Redis outage
            # redis-py 8 reads with a 5 s socket timeout by default, the very length of channels-redis's
            # blocking pop: an idle consumer's read could time out and crash it. Give reads room.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}], "capacity": 1000, "expiry": 30},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task whose worker died unannounced (SIGKILL, a lost machine) goes back to the Redis queue after this long. It must
# exceed the longest task plus its countdown (webhook retries back off up to ALERT_WEBHOOK_BACKOFF_MAX_S).
# Workers look for such tasks every 10 s (kombu's default scans only every tenth look, so a task that was not
# yet due at one scan waited 100 s more).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.float("CELERY_VISIBILITY_TIMEOUT_S", default=3600.0),
                                   "unacked_restore_interval": 10, "unacked_restore_throttle": 1}  # fmt: skip
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json", "lpr-json"]  # lpr-json: lpr_server/celery.py
CELERY_BEAT_SCHEDULE = {
    "detections-purge-expired": {"task": "detections.purge_expired", "schedule": 24 * 3600.0},
    "detections-ensure-partitions": {"task": "detections.ensure_partitions", "schedule": 3600.0},
    "detections-rollup-recent": {"task": "detections.rollup_recent", "schedule": env.float("ROLLUP_INTERVAL_S", default=300.0)},
}
# --- alerts: webhook and e-mail deliveries (retried with exponential backoff) ---------
ALERT_WEBHOOK_TIMEOUT_S = env.float("ALERT_WEBHOOK_TIMEOUT_S", default=5.0)
ALERT_WEBHOOK_BACKOFF_S = env.float("ALERT_WEBHOOK_BACKOFF_S", default=2.0)  # first retry; doubles each time
ALERT_WEBHOOK_BACKOFF_MAX_S = env.float("ALERT_WEBHOOK_BACKOFF_MAX_S", default=600.0)
ALERT_WEBHOOK_MAX_ATTEMPTS = env.int("ALERT_WEBHOOK_MAX_ATTEMPTS", default=10)
ALERT_WEBHOOK_DISABLE_AFTER = env.int("ALERT_WEBHOOK_DISABLE_AFTER", default=5)  # deliveries in a row that gave up
ALERT_INDEX_CHECK_S = env.float("ALERT_INDEX_CHECK_S", default=1.0)  # watchlist edits reach matching within this
# E-mail (alert e-mails, mail_admins): EMAIL_URL as django-environ reads it, e.g. smtp://user:pass@host:587
vars().update(env.email_url("EMAIL_URL", default="smtp://localhost:25"))
DEFAULT_FROM_EMAIL = SERVER_EMAIL = env("DEFAULT_FROM_EMAIL", default="lpr-server@localhost")
ADMINS = [(a, a) for a in env.list("ADMINS", default=[])]  # told when a webhook is disabled

# --- detections: passages and retention (days; 0 keeps forever) -----------------
PASSAGE_WINDOW_S = env.float("PASSAGE_WINDOW_S", default=5.0)
PASSAGE_MAX_DISTANCE = env.int("PASSAGE_MAX_DISTANCE", default=1)  # edits between folded plates of one passage
RETENTION_DETECTIONS_DAYS = env.int("RETENTION_DETECTIONS_DAYS", default=90)
RETENTION_IMAGES_DAYS = env.int("RETENTION_IMAGES_DAYS", default=30)
RETENTION_HEALTH_DAYS = env.int("RETENTION_HEALTH_DAYS", default=30)
RETENTION_MESSAGES_DAYS = env.int("RETENTION_MESSAGES_DAYS", default=90)  # the ledger: how long a resend is "duplicate"
RETENTION_REJECTED_DAYS = env.int("RETENTION_REJECTED_DAYS", default=30)

# --- MQTT ----------------------------------------------------------------------
# Unset: the run command starts an embedded broker on MQTT_EMBEDDED_PORT.
MQTT_URL = env("MQTT_URL", default="")
MQTT_EMBEDDED_PORT = env.int("MQTT_EMBEDDED_PORT", default=1883)

# --- device protocol -------------------------------------------------------------
ENVELOPE_MAX_BYTES = 256 * 1024
BATCH_MAX_MESSAGES = 1000
BATCH_MAX_BYTES = 16 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = BATCH_MAX_BYTES + 1024
IMAGE_MAX_BYTES = 5 * 1024 * 1024
COMPAT_MAX_BYTES = 4 * IMAGE_MAX_BYTES  # a camera-format webhook: a few pictures and their JSON or XML
# The most any endpoint takes and a margin; `serve` refuses a longer body before reading it.
HTTP_MAX_BODY_BYTES = env.int("HTTP_MAX_BODY_BYTES", default=max(DATA_UPLOAD_MAX_MEMORY_SIZE, COMPAT_MAX_BYTES) + 1024 * 1024)
# Per device, per process: a token bucket refilled at RATE messages/s up to BURST.
DEVICE_RATE_PER_S = env.float("DEVICE_RATE_PER_S", default=100.0)
DEVICE_RATE_BURST = max(env.int("DEVICE_RATE_BURST", default=2000), BATCH_MAX_MESSAGES)
SIGNATURE_MAX_SKEW_S = 300
COMMAND_LONG_POLL_MAX_S = 30
# devices/: the watch loop (manage.py run_device_watch), command re-sends and the online/offline model.
DEVICE_WATCH_INTERVAL_S = env.float("DEVICE_WATCH_INTERVAL_S", default=1.0)
DEVICE_OFFLINE_AFTER_S = env.float("DEVICE_OFFLINE_AFTER_S", default=90.0)  # no message, socket or MQTT status
COMMAND_ACK_TIMEOUT_S = env.float("COMMAND_ACK_TIMEOUT_S", default=30.0)  # `sent` and unanswered: send again
COMMAND_SWEEP_BATCH = 500  # devices per watch pass
DEVICE_TOKEN_TTL_S = env.int("DEVICE_TOKEN_TTL_S", default=900)
DEVICE_TOKEN_SECRET = env("DEVICE_TOKEN_SECRET", default=SECRET_KEY)
# WebSocket / Socket.IO: the server pings every INTERVAL; a connection silent for TIMEOUT is closed.
REALTIME_PING_INTERVAL_S = env.float("REALTIME_PING_INTERVAL_S", default=20.0)
REALTIME_SILENT_TIMEOUT_S = env.float("REALTIME_SILENT_TIMEOUT_S", default=60.0)
REALTIME_DB_WRITERS = env.int("REALTIME_DB_WRITERS", default=4)  # threads committing batches (transport/batching.py)
# While writes carry several messages each, a write starts at most this often (ms), taking all that arrived
# meanwhile: fewer, larger transactions. Lighter load, and 0, write as soon as a writer is free.
REALTIME_WRITE_GAP_MS = env.float("REALTIME_WRITE_GAP_MS", default=3.0)
HTTP_SYNC_THREADS = env.int("HTTP_SYNC_THREADS", default=8)  # threads running requests' synchronous code
VIDEO_MAX_FPS = env.float("VIDEO_MAX_FPS", default=10.0)
# An operator's /ws/dashboard/ that answers no frame for this long (while events wait for it) is closed.
DASHBOARD_STALL_TIMEOUT_S = env.float("DASHBOARD_STALL_TIMEOUT_S", default=30.0)
# Encrypts stored device secrets (payload and signing keys), so that a database dump alone does not reveal them.
SECRETS_KEY = env(
    "SECRETS_KEY",
    default=base64.urlsafe_b64encode(hashlib.sha256(("secrets:" + SECRET_KEY).encode()).digest()).decode(),
)

# --- operator API ---------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes anonymous requests a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "lpr_server.tokens.OperatorTokenAuthentication",  # DRF's `Token <key>`, stored hashed
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PARSER_CLASSES": [  # DRF's, refusing NUL characters
        "lpr_server.parsers.JSONParser", "lpr_server.parsers.FormParser", "lpr_server.parsers.MultiPartParser",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["devices.permissions.IsOperator"],  # staff, superusers, the operators group
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "transport.errors.drf_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LPR Server API",
    "DESCRIPTION": "Device API (cameras) and operator API of the LPR server.",
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    "ENUM_NAME_OVERRIDES": {"TransportEnum": "devices.models.TRANSPORTS"},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "transport.rest.schema.add_error_responses",  # the contract's error body on every operation
    ],
}

# bench/run only: serve the bare view its figures are compared with (bench/urls.py). Never on in production.
BENCH_VIEWS = env.bool("LPR_BENCH_VIEWS", default=False)

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}
