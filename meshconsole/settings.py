"""Settings: every value comes from the environment (see meshconsole.env)."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
import plotly

from meshconsole.env import (
    env_bool,
    env_choice,
    env_dns_name,
    env_duration_ms,
    env_int,
    env_list,
    env_networks,
    env_secret,
    env_str,
    persisted_secret,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("MESH_DATA_DIR", str(Path.home() / ".meshconsole"))).expanduser()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("MESH_DEBUG", False)
SECRET_KEY = env_secret("MESH_SECRET_KEY") or persisted_secret(DATA_DIR / "secret_key")
ALLOWED_HOSTS = env_list("MESH_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("MESH_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "journal",
    "registry",
    "policies",
    "identity",
    "monitoring",
    "agents",
    "gateway",
    "meshcode",
    "meshconsole",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "meshconsole.admission.AgentAdmissionMiddleware",
    "meshconsole.staticfiles.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "meshconsole.lockout.LockoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "meshconsole.urls"
ASGI_APPLICATION = "meshconsole.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "meshconsole" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "meshconsole.console.permissions.role_context",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'meshconsole.sqlite3'}"),
        conn_max_age=env_int("MESH_DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the web server, worker and beat share one file;
    # writers begin IMMEDIATE, read-only transactions DEFERRED (meshconsole.sqlite).
    DATABASES["default"]["ENGINE"] = "meshconsole.sqlite"
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "MESH_DB_POOL", True
):
    # A bounded pool per process: whatever the number of agents, one process never
    # holds more than MESH_DB_POOL_MAX connections (requests beyond wait for one,
    # up to MESH_DB_POOL_TIMEOUT seconds). A pool replaces persistent connections.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("MESH_DB_POOL_MAX", 8),
        "timeout": env_int("MESH_DB_POOL_TIMEOUT", 10),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: REDIS_URL, else the embedded redis-server on a unix socket in the data dir
# (started by `meshconsole up`, see meshconsole.embedded_redis).
EMBEDDED_REDIS_SOCKET = DATA_DIR / "redis.sock"
REDIS_URL = env_str("REDIS_URL", "") or f"unix://{EMBEDDED_REDIS_SOCKET}"
USE_EMBEDDED_REDIS = not env_str("REDIS_URL", "")


def _celery_url(url: str) -> str:
    # kombu spells a redis unix socket "redis+socket://".
    if url.startswith("unix://"):
        return "redis+socket://" + url[len("unix://") :]
    return url


CELERY_BROKER_URL = _celery_url(REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# One queue name per install lets several installs (or test runs) share a Redis.
CELERY_TASK_DEFAULT_QUEUE = env_str("MESH_CELERY_QUEUE", "meshconsole")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # No socket timeout: the layer's receive is a blocking BZPOPMIN, and
            # redis-py 8's 5 s default would tear every idle websocket down
            # (django/channels_redis#422).
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": env_str("MESH_CHANNEL_PREFIX", "asgi"),
        },
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "meshconsole",
    }
}

# Password logins go through the lockout (meshconsole.lockout).
AUTHENTICATION_BACKENDS = ["meshconsole.lockout.LockoutModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise serves from finders; it warns if this is missing
STATICFILES_DIRS = [
    BASE_DIR / "meshconsole" / "static",
    # plotly.js ships inside the plotly wheel: serve it from there, never a CDN.
    ("plotly", os.path.join(os.path.dirname(plotly.__file__), "package_data")),
]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the console's fetch() reads it for X-CSRFToken
SESSION_COOKIE_SECURE = env_bool("MESH_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# TLS deployments (docs/deployment.md): all off by default, since the
# out-of-the-box console listens on loopback over plain HTTP.
SECURE_HSTS_SECONDS = env_int("MESH_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("MESH_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("MESH_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = env_bool("MESH_SSL_REDIRECT", False)
# Load balancers and local probes ask over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# Only behind a proxy that sets X-Forwarded-Proto itself (and drops the client's).
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("MESH_PROXY_SSL_HEADER", False) else None
)

# Client addresses (meshconsole.clientaddr): X-Forwarded-For is read only from
# these peers (IPs or CIDRs, comma-separated).
MESH_TRUSTED_PROXIES = env_networks("MESH_TRUSTED_PROXIES", [])

# Login lockout (meshconsole.lockout): this many failed logins within the
# window lock the account, and MESH_LOGIN_ADDRESS_FAILURES lock the client
# address, until the window has passed over them.
MESH_LOGIN_FAILURES = env_int("MESH_LOGIN_FAILURES", 5)
MESH_LOGIN_ADDRESS_FAILURES = env_int("MESH_LOGIN_ADDRESS_FAILURES", 20)
MESH_LOGIN_LOCKOUT_SECONDS = env_int("MESH_LOGIN_LOCKOUT_SECONDS", 900)

_RENDERERS = ["rest_framework.renderers.JSONRenderer"]
if DEBUG:
    _RENDERERS.append("rest_framework.renderers.BrowsableAPIRenderer")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "meshconsole.apitokens.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["meshconsole.roles.RolePermission"],
    "DEFAULT_RENDERER_CLASSES": _RENDERERS,
    "DEFAULT_PARSER_CLASSES": ["meshconsole.parsers.MeshJSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "meshconsole.api.MeshPagination",
    "EXCEPTION_HANDLER": "meshconsole.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "meshconsole API",
    "DESCRIPTION": "Service registry, health, policies and topology of the mesh.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Intentions' allow|deny is one choice set, whatever field carries it.
    "ENUM_NAME_OVERRIDES": {"IntentionActionEnum": "identity.models.Action"},
    # What spectacular cannot see by itself (error responses, the blocking views).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "meshconsole.schema.postprocess",
    ],
}

# Mesh behaviour knobs.
MESH_HEARTBEAT_TTL = env_int("MESH_HEARTBEAT_TTL", 15)  # seconds without agent report
# Agent-protocol writes (enroll, report, certificates) running at once per web process,
# and waiting beyond them; the rest are 503 + Retry-After (meshconsole/admission.py).
MESH_AGENT_CONCURRENCY = env_int("MESH_AGENT_CONCURRENCY", 8)
MESH_AGENT_QUEUE = env_int("MESH_AGENT_QUEUE", 64)
# Reports per second the fleet's intervals aim at (registry/pacing.py); 0 = always 2 s.
MESH_REPORT_BUDGET = env_int("MESH_REPORT_BUDGET", 100)
MESH_ENROLL_TOKEN_TTL = env_int("MESH_ENROLL_TOKEN_TTL", 86_400)  # seconds; 0 = never expire
# Push-empty protection: seconds agents keep an upstream's last endpoints when
# deregistration empties it (0 = off; health and operator actions apply at once).
MESH_PUSH_EMPTY_HOLD = env_int("MESH_PUSH_EMPTY_HOLD", 60)
# More than this share of agents (with at least 3) silent at once is taken for a
# control-plane network problem: their instances are not marked critical.
MESH_SELF_PRESERVATION_PERCENT = env_int("MESH_SELF_PRESERVATION_PERCENT", 50)
MESH_MAX_WAIT = env_int("MESH_MAX_WAIT", 300)  # longest blocking query, seconds
# SQLite: closed connections kept open per process for the next request (0: none).
MESH_SQLITE_IDLE_MAX = env_int("MESH_SQLITE_IDLE_MAX", 8)
MESH_METRICS_RETENTION = env_int("MESH_METRICS_RETENTION", 3600)  # seconds
# Rollups of those windows (monitoring.rollups): one-minute rows, then ten-minute rows.
MESH_ROLLUP_1M_RETENTION = env_int("MESH_ROLLUP_1M_RETENTION", 24 * 3600)
MESH_ROLLUP_10M_RETENTION = env_int("MESH_ROLLUP_10M_RETENTION", 7 * 24 * 3600)
MESH_EVENTS_RETENTION = env_int("MESH_EVENTS_RETENTION", 7 * 24 * 3600)
# Topology time travel (monitoring.timetravel): a frame per minute for FINE
# seconds, then one per 10 minutes, none past RETENTION.
MESH_TIMETRAVEL_RETENTION = env_int("MESH_TIMETRAVEL_RETENTION", 24 * 3600)
MESH_TIMETRAVEL_FINE = env_int("MESH_TIMETRAVEL_FINE", 6 * 3600)
MESH_CHECK_ALLOW_LINK_LOCAL = env_bool("MESH_CHECK_ALLOW_LINK_LOCAL", False)

# Zero trust (docs/security.md): the built-in CA, identities, mTLS modes.
MESH_TRUST_DOMAIN = env_dns_name("MESH_TRUST_DOMAIN", "mesh.local")
MESH_CERT_TTL_MS = env_duration_ms("MESH_CERT_TTL", "24h", min_ms=60_000, max_ms=366 * 86_400_000)
MESH_MTLS_DEFAULT = env_choice("MESH_MTLS_DEFAULT", "permissive", ("strict", "permissive", "off"))
# A CA supplied from files (production); unset = generated in DATA_DIR/ca at first use.
MESH_CA_CERT_FILE = env_str("MESH_CA_CERT_FILE", "")
MESH_CA_KEY_FILE = env_str("MESH_CA_KEY_FILE", "")
MESH_CA_DIR = DATA_DIR / "ca"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("MESH_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
