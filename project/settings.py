"""Settings for Switchboard, read from the environment (see PROTOCOL.md, "Configuration")."""

import os
import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from project.env import env_bool, env_float, env_int, env_list, env_str, secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = secret_key(BASE_DIR / ".secret_key")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
HTTPS = env_bool("DJANGO_HTTPS", False)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ninja",
    "live",
    "sessions_app",
    "logs_app",
    "operations",
]

MIDDLEWARE = [
    # Django's own, with hooks that do no database work run on the event loop
    # (project/middleware.py); WhiteNoise as async.
    "project.middleware.ApiJsonErrors",
    # A client address's request rate on the API, before authentication.
    "project.throttles.AddressLimit",
    "project.middleware.SecurityMiddleware",
    "project.middleware.StaticFiles",
    "project.middleware.SessionMiddleware",
    "project.middleware.CommonMiddleware",
    "project.middleware.CsrfViewMiddleware",
    "project.middleware.AuthenticationMiddleware",
    "project.middleware.MessageMiddleware",
    "project.middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

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

# Database: DATABASE_URL, or a SQLite file in the project folder.
# Connections are kept between requests: under daphne, sync views and the
# consumers' database calls all run in one thread, so one connection serves
# them (with a health check before reuse).
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DJANGO_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes the write lock at BEGIN: writers are serialized, so
        # event ids are handed out in commit order (see live.events).
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory: end-to-end tests share it with a daphne process.
    # SWITCHBOARD_TEST_DB: another file, for two test runs side by side.
    DATABASES["default"]["TEST"] = {
        "NAME": env_str("SWITCHBOARD_TEST_DB", str(BASE_DIR / ".test-db.sqlite3"))
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's ASGI handler runs each request's sync code in a thread of its
    # own, so connections kept per thread pile up (one per request, until the
    # garbage collector). A pool bounds them per process whatever the load;
    # a request that finds it empty waits up to DB_POOL_TIMEOUT seconds.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": env_int("SWITCHBOARD_DB_POOL_MIN", 1),
            "max_size": env_int("SWITCHBOARD_DB_POOL_MAX", 8, minimum=1),
            "timeout": env_int("SWITCHBOARD_DB_POOL_TIMEOUT", 10, minimum=1),
        },
        # Names the process's connections in pg_stat_activity.
        "application_name": f"switchboard-{os.getpid()}",
    }
else:
    raise ImproperlyConfigured("DATABASE_URL must be a sqlite:// or postgres:// URL")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channel layer: in-memory (one process) unless REDIS_URL is set.
REDIS_URL = env_str("REDIS_URL")
REDIS_PREFIX = env_str("SWITCHBOARD_REDIS_PREFIX", "switchboard")
LAYER_CAPACITY = env_int("SWITCHBOARD_LAYER_CAPACITY", 5000, minimum=100)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # socket_timeout=None: a timeout breaks the layer's blocking reads.
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "capacity": LAYER_CAPACITY,
                "expiry": 60,
                "group_expiry": 86400,
                "prefix": REDIS_PREFIX,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_PREFIX,
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": LAYER_CAPACITY, "expiry": 60},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Served under a path of a site (https://ops.example.com/switchboard/): the
# path, as the browser sees it. Pages, static files, API, sockets and admin
# all live under it; a proxy may pass the path on with or without it.
_root = env_str("SWITCHBOARD_ROOT_PATH").strip("/")
ROOT_PATH = f"/{_root}" if _root else ""
FORCE_SCRIPT_NAME = ROOT_PATH or None
# With the root path in front (Django would add it to a relative one only
# on first use, which may come before any request has set it).
STATIC_URL = f"{ROOT_PATH}/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "project.storage.StaticStorage"
    },
}
# Serve from the finders when collectstatic has not run (local runs, tests).
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at", module="django.core.handlers.base")
WHITENOISE_MANIFEST_STRICT = False

# Log batches can be large: 10,000 entries in one POST.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("SWITCHBOARD_MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1024)

# HTTPS hardening is its own switch, independent of DEBUG, so that a
# plain-http run with DEBUG off still logs in.
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
# The host the browser used, from a proxy that sends X-Forwarded-Host: only
# when this says the proxy is the one that sets it.
USE_X_FORWARDED_HOST = env_bool("DJANGO_USE_X_FORWARDED_HOST")

# Where people open Switchboard, root path included
# (https://ops.example.com/switchboard): links in alerts are absolute with it.
PUBLIC_URL = env_str("SWITCHBOARD_PUBLIC_URL").rstrip("/")
if PUBLIC_URL and not PUBLIC_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured("SWITCHBOARD_PUBLIC_URL must start with http:// or https://")

# The Celery broker that POST /tasks/<id>/retry sends a recorded Celery task
# to again (unset: a retry records the new attempt only). Celery is imported
# only when this is set (sessions_app/resend.py), and the send waits at most
# SWITCHBOARD_CELERY_SEND_TIMEOUT seconds.
SWITCHBOARD_CELERY_BROKER_URL = env_str("SWITCHBOARD_CELERY_BROKER_URL") or None
SWITCHBOARD_CELERY_SEND_TIMEOUT = env_float("SWITCHBOARD_CELERY_SEND_TIMEOUT", 5.0, minimum=0.1)

# Switchboard's own knobs.
SWITCHBOARD = {
    "PUBLIC_URL": PUBLIC_URL,
    # URLs that get every alert as a JSON POST (more in the admin: Webhooks).
    "WEBHOOKS": env_list("SWITCHBOARD_WEBHOOKS", []),
    # Seconds between a server's looks at the webhook outbox, for deliveries
    # left by a process that stopped (its own are sent at once after commit).
    "OUTBOX_POLL_SECONDS": env_float("SWITCHBOARD_OUTBOX_POLL_SECONDS", 5.0, minimum=0.1),
    # Seconds without a report before a running task fails (0: never), and
    # how often each server process looks.
    "STALE_AFTER": env_int("SWITCHBOARD_STALE_AFTER", 600, minimum=0),
    "STALE_CHECK_SECONDS": env_float("SWITCHBOARD_STALE_CHECK_SECONDS", 1.0, minimum=0.1),
    # Seconds a session whose tasks have all ended waits, with nothing new
    # arriving for it, before it ends by itself (0: never).
    "SESSION_SETTLE": env_int("SWITCHBOARD_SESSION_SETTLE", 30, minimum=0, maximum=10_000_000),
    # Threads (each with its database connection) that run the async
    # endpoints' database work: progress reports, output chunks, log lines.
    "DB_THREADS": env_int("SWITCHBOARD_DB_THREADS", 4, minimum=0),
    # Seconds a server process keeps an API token's user and permissions
    # (live/tokens.py); a revocation reaches every process at once whatever
    # this is. The bound is for changes no signal reports.
    "TOKEN_CACHE_SECONDS": env_float("SWITCHBOARD_TOKEN_CACHE_SECONDS", 60.0, minimum=0),
    # Where Redis keys of the server's own live (the token version).
    "REDIS_PREFIX": REDIS_PREFIX,
    # Seconds a server process drains after SIGTERM before it exits (requests
    # in flight finish, sockets close with 1012; 0: stop at once).
    "DRAIN_SECONDS": env_float("SWITCHBOARD_DRAIN_SECONDS", 5.0, minimum=0),
    # Seconds without any frame from a client before the server drops it.
    "IDLE_TIMEOUT": env_int("SWITCHBOARD_IDLE_TIMEOUT", 300, minimum=1),
    # Largest WebSocket frame accepted, in bytes.
    "MAX_FRAME_BYTES": env_int("SWITCHBOARD_MAX_FRAME_BYTES", 1024 * 1024, minimum=1024),
    # Frames a second one connection may send (sustained), and the burst.
    "RATE_PER_SECOND": env_int("SWITCHBOARD_RATE_PER_SECOND", 200, minimum=1),
    "RATE_BURST": env_int("SWITCHBOARD_RATE_BURST", 400, minimum=1),
    # Log lines in a logs:<id> snapshot and in a default HTTP page.
    "LOG_SNAPSHOT_LINES": env_int("SWITCHBOARD_LOG_SNAPSHOT_LINES", 100, minimum=1),
    # Log lines `prune` keeps of each session, running ones included: the
    # newest this many (0: all; `prune --keep-lines` overrides it).
    "LOG_LINES_PER_SESSION": env_int("SWITCHBOARD_LOG_LINES_PER_SESSION", 0, minimum=0),
    # Log entries in one log.append frame at most.
    "LOG_FRAME_ENTRIES": env_int("SWITCHBOARD_LOG_FRAME_ENTRIES", 1000, minimum=1),
    # Live log lines a second one subscription is sent, and the burst; lines
    # past that are skipped with a log.skipped notice naming exactly which.
    "LOG_LINES_PER_SECOND": env_int("SWITCHBOARD_LOG_LINES_PER_SECOND", 2000, minimum=1),
    "LOG_LINES_BURST": env_int("SWITCHBOARD_LOG_LINES_BURST", 10000, minimum=1),
    # Bytes the server holds for one socket that does not read what it is sent;
    # past that it is paused, and caught up from the database once it reads.
    "SEND_BUFFER_BYTES": env_int("SWITCHBOARD_SEND_BUFFER_BYTES", 2 * 1024 * 1024, minimum=16384),
    # Seconds a socket may stay paused before it is closed (4503).
    "SLOW_CLOSE": env_int("SWITCHBOARD_SLOW_CLOSE", 120, minimum=1),
    # HTTP API requests a second per token (per user for a browser) and per
    # client address, each with a burst, per server process (0: no limit);
    # past them a 429 with Retry-After.
    "TOKEN_RATE": env_float("SWITCHBOARD_TOKEN_RATE", 200.0, minimum=0),
    "TOKEN_BURST": env_int("SWITCHBOARD_TOKEN_BURST", 1000, minimum=1),
    "ADDRESS_RATE": env_float("SWITCHBOARD_ADDRESS_RATE", 500.0, minimum=0),
    "ADDRESS_BURST": env_int("SWITCHBOARD_ADDRESS_BURST", 2000, minimum=1),
    # permessage-deflate for sockets whose client offers it (browsers do):
    # fewer bytes on the wire, more CPU per frame and subscriber.
    "WS_COMPRESSION": env_bool("SWITCHBOARD_WS_COMPRESSION", False),
    # Sockets one server process takes (0: no limit); past it a new socket is
    # told to come back after RETRY_AFTER seconds (an error frame, then 4013).
    "MAX_CONNECTIONS": env_int("SWITCHBOARD_MAX_CONNECTIONS", 0, minimum=0),
    "RETRY_AFTER": env_int("SWITCHBOARD_RETRY_AFTER", 5, minimum=1),
    # Seconds between checks of the watched channels' heads in the database:
    # a safety net for messages the layer lost, and how a server without Redis
    # hears of events written by other processes (commands): a subscriber
    # behind a head seen in one check is caught up at the next.
    "HEAD_CHECK_SECONDS": env_float(
        "SWITCHBOARD_HEAD_CHECK_SECONDS", 10.0 if REDIS_URL else 0.5, minimum=0.1
    ),
    # Seconds between checks that open sockets' identities still hold (a
    # deleted token or a logged-out browser loses its sockets within this).
    "IDENTITY_CHECK_SECONDS": env_int("SWITCHBOARD_IDENTITY_CHECK_SECONDS", 5, minimum=1),
    # /metrics without a token (on a private network, for Prometheus).
    "METRICS_PUBLIC": env_bool("SWITCHBOARD_METRICS_PUBLIC", False),
    # Seconds between system.stats frames on the system channel.
    "STATS_INTERVAL": env_int("SWITCHBOARD_STATS_INTERVAL", 5, minimum=1),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"switchboard": {"level": env_str("SWITCHBOARD_LOG_LEVEL", "INFO")}},
}
