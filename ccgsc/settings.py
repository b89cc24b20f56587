"""Settings for CCGSC, read from environment variables; the defaults are the embedded stack.

Embedded (no set-up): SQLite, in-memory channel layer, eager Celery, local media folder.
Real stack: set DATABASE_URL (Postgres) and REDIS_URL (channel layer and Celery broker).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from ccgsc.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CCGSC_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in the var folder."""
    key = env_str("SECRET_KEY", "")
    if key:
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Behind a TLS-terminating proxy (browser workers need a secure context for WebCrypto).
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "apps.jobs",
    "apps.rounds",
    "apps.secagg",
    "apps.registry",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ccgsc.urls"
ASGI_APPLICATION = "ccgsc.asgi.application"
WSGI_APPLICATION = "ccgsc.wsgi.application"

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

# Database: SQLite file by default, Postgres (or anything dj-database-url parses) by DATABASE_URL.
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
WHITENOISE_USE_FINDERS = True

# Artifact storage: a local folder by default; CCGSC_STORAGE=s3 uses django-storages (S3/MinIO),
# configured by its own AWS_* variables (AWS_STORAGE_BUCKET_NAME, AWS_S3_ENDPOINT_URL, ...).
_STORAGE = env_str("CCGSC_STORAGE", "local")
if _STORAGE == "local":
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
elif _STORAGE == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("AWS_STORAGE_BUCKET_NAME", "ccgsc"),
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL", "") or None,
            "file_overwrite": False,
        },
    }
else:
    raise ImproperlyConfigured(f"CCGSC_STORAGE={_STORAGE!r}: use 'local' or 's3'")
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Channels and Celery: in-memory and eager unless REDIS_URL is set.
REDIS_URL = env_str("REDIS_URL", "")
_CHANNEL_LAYER = env_str("CCGSC_CHANNEL_LAYER", "pubsub")
if REDIS_URL:
    if _CHANNEL_LAYER == "pubsub":
        # Redis pub/sub pushes every message for a process over one subscription: a round's
        # burst of assign frames reaches its sockets at once, and the pool stays at two
        # connections per process (see the stack notes).
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [REDIS_URL]},
            }
        }
    elif _CHANNEL_LAYER == "core":
        # Stock core-layer settings fail at scale: a 100-connection pool that raises instead
        # of waiting, and a socket timeout equal to the layer's blocking read.
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [
                        {"address": REDIS_URL, "max_connections": 5000, "socket_timeout": 15}
                    ],
                    "capacity": 1000,
                    "group_expiry": 300,
                },
            }
        }
    else:
        raise ImproperlyConfigured(f"CCGSC_CHANNEL_LAYER={_CHANNEL_LAYER!r}: use pubsub or core")
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "rounds-sweep": {"task": "apps.rounds.tasks.rounds_sweep", "schedule": 5.0},
    "units-sweep": {"task": "apps.jobs.tasks.units_sweep", "schedule": 5.0},
    "analytics-sweep": {"task": "apps.jobs.tasks.analytics_sweep", "schedule": 5.0},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CCGSC API",
    "DESCRIPTION": "Federated learning and federated computing: jobs, rounds, models, workers.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs page's assets come from a package, not a CDN: servers here may be offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGIN_URL = "/admin/login/"

# The worker gateway (docs/protocol.md).
CCGSC_UPLOAD_DIR = Path(env_str("CCGSC_UPLOAD_DIR", str(VAR_DIR / "uploads")))
CCGSC_MAX_TEXT_FRAME = env_int("CCGSC_MAX_TEXT_FRAME", 64 * 1024)
CCGSC_CHUNK_BYTES = env_int("CCGSC_CHUNK_BYTES", 1024 * 1024)
CCGSC_MODEL_PUSH_BYTES = env_int("CCGSC_MODEL_PUSH_BYTES", 256 * 1024)
CCGSC_UPLOAD_MEMORY_BYTES = env_int("CCGSC_UPLOAD_MEMORY_BYTES", 1024 * 1024)
CCGSC_HEARTBEAT_S = env_int("CCGSC_HEARTBEAT_S", 15)
CCGSC_WORKER_TIMEOUT_S = env_int("CCGSC_WORKER_TIMEOUT_S", 45)
CCGSC_HELLO_TIMEOUT_S = env_int("CCGSC_HELLO_TIMEOUT_S", 10)
CCGSC_RECONNECT_GRACE_S = env_int("CCGSC_RECONNECT_GRACE_S", 3)
CCGSC_WORKER_TOKEN_TTL_DAYS = env_int("CCGSC_WORKER_TOKEN_TTL_DAYS", 365)
CCGSC_AGGREGATION_CLAIM_TIMEOUT_S = env_int("CCGSC_AGGREGATION_CLAIM_TIMEOUT_S", 600)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
}
