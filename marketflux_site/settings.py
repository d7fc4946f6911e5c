"""MarketFlux settings: every value comes from the environment.

See env.py, and docs/operations.md#settings for the list.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp import constants as csp_source
from django.core.exceptions import ImproperlyConfigured

from marketflux_site.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
# Local state of `make run` (embedded databases, beat schedule, dev admin password).
VAR_DIR = Path(env_str("MARKETFLUX_VAR_DIR", str(BASE_DIR / "var"))).resolve()

DJANGO_ENV = env_str("DJANGO_ENV", "development")
if DJANGO_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be development or production, got {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"

_DEV_SECRET_KEY = "dev-only-insecure-key-change-me-marketflux-0000000000000000000000"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY", "" if PRODUCTION else _DEV_SECRET_KEY)
DEBUG = env_bool("DEBUG", not PRODUCTION)
if PRODUCTION:
    if not SECRET_KEY or SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("production needs SECRET_KEY set to a long random value")
    if DEBUG:
        raise ImproperlyConfigured("production refuses DEBUG=1")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "auditlog",  # the audit log (apps/accounts/audit.py)
    "apps.market",
    "apps.accounts",
    "apps.indicators",
    "apps.alerts",
    "apps.ingest",
    "apps.streaming",
    "apps.api",
    "apps.dashboard",
    "apps.polygon",
    "apps.sources",
    "apps.ops",
    "axes",  # login protection: lockout after repeated failures (below)
    "csp",  # the Content-Security-Policy header (below)
]

MIDDLEWARE = [
    "apps.ops.logcontext.RequestIdMiddleware",  # first: every line of the request has its id
    # Every request counted and timed by route template (/metrics), the lean path's too.
    "apps.ops.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Anonymous JSON reads of the hot state (/price, /indicators) answered here, past the
    # rest of the chain and DRF, in one Redis round trip (apps/api/lean.py says when).
    "apps.api.lean.LeanReadMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Changes made by the request are audited with its door, user and address.
    "apps.accounts.middleware.AuditDoorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Outside SiteNotFoundPage, so the 404 page it renders gets the policy and its nonce.
    "apps.dashboard.middleware.PageCSPMiddleware",
    "apps.dashboard.middleware.SiteNotFoundPage",
    # Last, as django-axes requires: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]
# DEBUG shows the site's own 404 page (apps/dashboard/middleware.py) unless this is set.
MARKETFLUX_DEBUG_404 = env_bool("MARKETFLUX_DEBUG_404", False)

ROOT_URLCONF = "marketflux_site.urls"
WSGI_APPLICATION = "marketflux_site.wsgi.application"
ASGI_APPLICATION = "marketflux_site.asgi.application"

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
                "apps.dashboard.context_processors.site",
            ],
        },
    },
]

# PostgreSQL only (docs/architecture.md#stack): COPY, date_bin, ON CONFLICT and TimescaleDB need it.
DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketflux")
# Each process keeps a pool of connections (psycopg_pool). Under ASGI every request runs in
# a thread of its own, so per-thread persistent connections (CONN_MAX_AGE) would open one
# connection per request and leave it behind; the pool bounds them per process.
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 20, minimum=1)
DATABASES = {
    # Health checks: the pool checks a connection when lending it, so one cut while idle
    # (a database restart) is replaced instead of failing the request.
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=0, conn_health_checks=True)
}
# No JIT: our queries are short index scans whose row estimates can look large (a range
# over a year of bars), and compiling them cost 30+ ms where running them took 1 ms.
DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
DATABASES["default"]["OPTIONS"]["pool"] = {
    "min_size": 1,
    "max_size": DB_POOL_MAX_SIZE,
    "timeout": env_float("DB_POOL_TIMEOUT", 2.0, minimum=0.0),  # then the request fails fast
    "max_idle": 60,
}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        "MarketFlux runs on PostgreSQL only: DATABASE_URL must be postgres://"
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The dashboard's login and logout (django.contrib.auth views under /accounts/).
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

# Login protection (django-axes; docs/security.md#login-protection). Every password login
# (the site's /accounts/login/, the admin's, the browsable API's) goes through
# django.contrib.auth's authenticate(), which axes watches: after MARKETFLUX_LOGIN_FAILURES
# failures of one username from one address, that pair is locked out for
# MARKETFLUX_LOCKOUT_MINUTES after its last attempt (0: until an admin unlocks it), even
# with the right password. Unlock: the admin's Axes > Access attempts (delete the row), or
# `manage.py axes_reset_username <name>`.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out pair before checking
    "django.contrib.auth.backends.ModelBackend",
]
MARKETFLUX_LOGIN_FAILURES = env_int("MARKETFLUX_LOGIN_FAILURES", 5, minimum=1)
MARKETFLUX_LOCKOUT_MINUTES = env_int("MARKETFLUX_LOCKOUT_MINUTES", 15, minimum=0)
AXES_FAILURE_LIMIT = MARKETFLUX_LOGIN_FAILURES
AXES_COOLOFF_TIME = (
    timedelta(minutes=MARKETFLUX_LOCKOUT_MINUTES) if MARKETFLUX_LOCKOUT_MINUTES else None
)
# Per username and address together: one user mistyping cannot lock everyone behind the
# same NAT out, and a guesser cannot lock a user out from elsewhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # a good login forgets the earlier failures of that pair
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"  # answered with 429 Too Many Requests
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"  # the admin lists and unlocks
# No "AXES: BEGIN" line from every process and command; failures and lockouts are still
# logged (WARNING, axes.handlers), naming the username and address.
AXES_VERBOSE = False


def _login_client_ip(request) -> str | None:
    """The client's address as the API throttle and /metrics see it (NUM_PROXIES trusted
    proxies in front: the address the outermost of them recorded, else the peer's), so a
    client cannot pick the address it is locked out under by sending X-Forwarded-For."""
    from django.conf import settings as live_settings

    from apps.ops.metrics import client_address

    address = client_address(request.META, live_settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:  # a proxy that wrote something else: the peer, which is a real address
        return request.META.get("REMOTE_ADDR") or None


AXES_CLIENT_IP_CALLABLE = _login_client_ip

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# One way to write a time across the site and the admin (marketflux_site/formats/en).
FORMAT_MODULE_PATH = ["marketflux_site.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # The chart library from npm (`npm ci`), served by WhiteNoise like our own files: no CDN.
    ("vendor/lightweight-charts", BASE_DIR / "node_modules" / "lightweight-charts" / "dist"),
]
WHITENOISE_USE_FINDERS = DEBUG  # development serves straight from static/, no collectstatic
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns when it is missing
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# Channels: the pub/sub layer, chosen for fan-out. A group_send is one PUBLISH whatever
# the number of sockets, and each Daphne process copies it to its own consumers in memory;
# the default layer instead writes one copy per consumer channel into Redis and drops
# silently (logged at INFO) once a channel holds `capacity` messages. Delivery is
# at-most-once, which suits ticks: a socket that reconnects gets a fresh snapshot. Each
# process's broadcaster (apps/streaming/broadcast.py) is the one member of a group in that
# process and never blocks on a slow socket (its outbox keeps the newest tick per symbol),
# so the in-process queue stays short. Hosts are dicts so redis-py's 5 s socket timeout can
# be switched off: an idle subscription must not time out.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "apps.streaming.layers.FanOutChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": None, "max_connections": 1000}],
            # Pub/sub channels ignore Redis database numbers: name them after the database,
            # so two deployments sharing one Redis server on different databases stay apart.
            "prefix": f"mf{urlsplit(REDIS_URL).path.strip('/') or '0'}:asgi",
        },
    }
}

# The port the pages open their WebSockets on, when it is not their own: `make run` without
# nginx serves them on a second port (docs/operations.md#serving). Empty: the page's origin.
MARKETFLUX_WS_PORT = env_int("MARKETFLUX_WS_PORT", 0, minimum=0) or None
# WebSockets one client address may hold open at once in one ASGI process; the next is
# accepted and closed with 4429 (apps/streaming/limits.py says why per process). A browser
# needs one or two a tab; this leaves room for offices behind one NAT address. 0: no limit.
MARKETFLUX_WS_MAX_PER_IP = env_int("MARKETFLUX_WS_MAX_PER_IP", 100, minimum=0)


# The Content-Security-Policy (django-csp, on HTML answers: PageCSPMiddleware;
# docs/security.md#headers-and-the-content-security-policy). Scripts only from this site,
# or inline with the request's nonce (the one inline script the pages keep: base.html's
# import map). No plugins, no <base> pointing elsewhere,
# no framing, forms post here only. Styles: our stylesheets, plus <style> elements bearing
# the nonce (ReDoc's, which it creates with the nonce it is given). Style attributes in
# markup are refused (but for DRF's few, below); styles a script sets through the DOM
# (element.style, as the charts and the table do) are CSSOM, which CSP does not govern, so
# the libraries' run-time styling works.
# The pages' WebSockets go to their own origin, which 'self' covers for ws: and wss:;
# without a proxy (`make run` without nginx) they go to MARKETFLUX_WS_PORT of the same host,
# so that port is allowed on each of ALLOWED_HOSTS (the only hosts Django serves pages for;
# an IPv6 literal cannot be written in a policy, so [::1] pages get 'self' only).
def _csp_ws_sources(hosts: list[str], port: int | None) -> list[str]:
    sources = []
    for host in hosts if port else []:
        if host.startswith("["):
            continue
        # ALLOWED_HOSTS' ".example.com" (the domain and its subdomains) in CSP's words.
        names = [host[1:], f"*{host}"] if host.startswith(".") else [host]
        sources += [f"{scheme}://{name}:{port}" for name in names for scheme in ("ws", "wss")]
    return sources


# The browsable API's pages are DRF's templates, which set a few style attributes in markup
# (its login box's width, the format menu's float). Rather than allowing every style
# attribute ('unsafe-inline'), these exact values are allowed by their hashes
# ('unsafe-hashes'): an injected style attribute still is not. A DRF upgrade that changes
# one shows as a violation (apps/dashboard/tests/test_headers.py checks these pages).
_DRF_STYLE_ATTRIBUTES = [
    "float: right; margin-right: 10px",  # rest_framework/base.html: the format menu, filters
    "float: right",  # filters/ordering.html
    "width: 350px",  # filters/search.html
    "margin-top: 30px",  # login_base.html, the login box ...
    "width: 320px; margin-left: auto; margin-right: auto",
    "margin: 0 0 20px;",
    "border: none",
    "border-bottom: 1px solid #e5e5e5",  # horizontal/fieldset.html (nested forms)
    "border-bottom: 0",
]


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


_CSP_DIRECTIVES = {
    "default-src": [csp_source.SELF],
    "script-src": [csp_source.SELF, csp_source.NONCE],
    "style-src": [csp_source.SELF, csp_source.NONCE],
    "style-src-attr": ["'unsafe-hashes'", *map(_csp_hash, _DRF_STYLE_ATTRIBUTES)],
    "img-src": [csp_source.SELF, "data:"],  # Swagger UI's and ReDoc's icons are data: URLs
    "font-src": [csp_source.SELF, "data:"],
    "connect-src": [csp_source.SELF, *_csp_ws_sources(ALLOWED_HOSTS, MARKETFLUX_WS_PORT)],
    "object-src": [csp_source.NONE],
    "base-uri": [csp_source.SELF],
    "form-action": [csp_source.SELF],
    "frame-ancestors": [csp_source.NONE],
}
# Where browsers POST what the policy blocked (a collector of yours); empty: nowhere.
MARKETFLUX_CSP_REPORT_URI = env_str("MARKETFLUX_CSP_REPORT_URI", "")
if MARKETFLUX_CSP_REPORT_URI:
    _CSP_DIRECTIVES["report-uri"] = [MARKETFLUX_CSP_REPORT_URI]
# 1: the same policy as Content-Security-Policy-Report-Only, for a rollout: browsers report
# what it would block and block nothing.
MARKETFLUX_CSP_REPORT_ONLY = env_bool("MARKETFLUX_CSP_REPORT_ONLY", False)
if MARKETFLUX_CSP_REPORT_ONLY:
    CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": _CSP_DIRECTIVES}
else:
    CONTENT_SECURITY_POLICY = {"DIRECTIVES": _CSP_DIRECTIVES}

# The API (apps/api). Market data is public unless MARKETFLUX_PUBLIC_READ=0; anything
# per-user always needs a login.
MARKETFLUX_PUBLIC_READ = env_bool("MARKETFLUX_PUBLIC_READ", True)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous call then gets 401 with WWW-Authenticate, not 403. It
        # reads API tokens and legacy DRF tokens not migrated yet (docs/security.md#api-tokens).
        "apps.accounts.tokens.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "apps.accounts.tokens.TokenScopes",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "apps.api.renderers.FastJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "apps.api.pagination.StockPagination",
    "DEFAULT_SCHEMA_CLASS": "apps.api.schema.MarketFluxAutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "apps.api.throttles.AnonThrottle",
        "apps.api.throttles.UserThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("MARKETFLUX_THROTTLE_ANON", "1200/min"),
        "user": env_str("MARKETFLUX_THROTTLE_USER", "6000/min"),
    },
    "NUM_PROXIES": env_int("NUM_PROXIES", 0, minimum=0),
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MarketFlux API",
    "DESCRIPTION": (
        "Real-time market data: symbols, latest prices and indicators from the live "
        "pipeline, tick and indicator history, OHLCV bars. Timestamps are ISO 8601 UTC."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Swagger UI and ReDoc from the installed sidecar package, not a CDN: docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery reads every CELERY_* setting here (namespace="CELERY" in celery.py). The broker is
# Redis (the default) or RabbitMQ (amqp://); docs/operations.md#the-celery-broker.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
_BROKER_SCHEME = urlsplit(CELERY_BROKER_URL).scheme
_AMQP_SCHEMES = {"amqp", "amqps", "pyamqp"}
# What a killed worker loses is worked out (and tested) for these two brokers only.
if _BROKER_SCHEME not in {"redis", "rediss", "redis+socket", "sentinel", *_AMQP_SCHEMES}:
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL must be redis:// or amqp:// (RabbitMQ), got {CELERY_BROKER_URL!r}"
    )
if _BROKER_SCHEME in _AMQP_SCHEMES:
    # RabbitMQ confirms each publish, so beat's send of a tick is not lost in a connection
    # that breaks just after it (an AMQP publish is otherwise fire-and-forget).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
# The queue every task goes to and every worker reads (on RabbitMQ also its exchange).
# Deployments sharing a broker keep apart by vhost or Redis database; the tests by this name.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "") or "celery"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged when it ends, not when it starts: if its worker dies in the middle,
# the broker hands it to another worker (RabbitMQ at once, when the connection drops; Redis
# after its visibility timeout, an hour, when a tick has long expired). Replaying a batch is
# safe: every write is idempotent. A killed prefork child's task is requeued too
# (reject_on_worker_lost). Prefetch 1 with acks_late: a worker holds no more tasks than it
# has processes, so the next tick goes to an idle worker instead of waiting (and expiring)
# behind a busy one's batch.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# MarketFlux itself.
TICK_INTERVAL = env_float("TICK_INTERVAL", 0.5, minimum=0.0)
# /ready fails "ticks" when no shard has reported a tick run for this long (s).
MARKETFLUX_READY_TICK_AGE = env_float(
    "MARKETFLUX_READY_TICK_AGE", max(5.0, 10 * (TICK_INTERVAL or 0.5)), minimum=0.1
)
MARKETFLUX_SYMBOLS = [s.upper() for s in env_list("MARKETFLUX_SYMBOLS", [])]
MARKETFLUX_SEED = env_int("MARKETFLUX_SEED", 42)
MARKETFLUX_SHARDS = env_int("MARKETFLUX_SHARDS", 1, minimum=1)
# Live sources (docs/sources.md#live-feeds): how long after its end a slot waits for its
# last trades before its tick is stored; a trade later than that is folded in late.
MARKETFLUX_SOURCE_LATE_AFTER = env_float("MARKETFLUX_SOURCE_LATE_AFTER", 1.0, minimum=0.0)
# The longest pause between reconnects (they start at about a second and double).
MARKETFLUX_SOURCE_RECONNECT_MAX = env_float("MARKETFLUX_SOURCE_RECONNECT_MAX", 60.0, minimum=1.0)
MARKETFLUX_REQUIRE_TIMESCALE = env_bool("MARKETFLUX_REQUIRE_TIMESCALE", False)
MARKETFLUX_TICK_RETENTION_DAYS = env_int("MARKETFLUX_TICK_RETENTION_DAYS", 7, minimum=1)
MARKETFLUX_BAR_RETENTION_DAYS = env_int("MARKETFLUX_BAR_RETENTION_DAYS", 0, minimum=0)

# The audit log (django-auditlog; apps/accounts/audit.py, docs/security.md#audit-log): entries
# older than this many days are deleted daily; 0 keeps them all. Changes are stored as JSON
# values (a number stays a number), and each entry's `cid` is the request's or batch's id.
MARKETFLUX_AUDIT_RETENTION_DAYS = env_int("MARKETFLUX_AUDIT_RETENTION_DAYS", 365, minimum=0)
AUDITLOG_STORE_JSON_CHANGES = True
AUDITLOG_CID_GETTER = "apps.accounts.audit.correlation_id"

# GET /metrics is for scrapers only (docs/operations.md#metrics): a client whose address is
# in these networks (through NUM_PROXIES proxies, the address they saw), or one that sends
# `Authorization: Bearer <MARKETFLUX_METRICS_TOKEN>` when that is set.
MARKETFLUX_METRICS_ALLOW = env_list("MARKETFLUX_METRICS_ALLOW", ["127.0.0.1/32", "::1/128"])
for _network in MARKETFLUX_METRICS_ALLOW:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError as _error:
        raise ImproperlyConfigured(f"MARKETFLUX_METRICS_ALLOW: {_error}") from None
MARKETFLUX_METRICS_TOKEN = env_str("MARKETFLUX_METRICS_TOKEN", "")

# LOG_FORMAT=json: one JSON object a line (python-json-logger), with the request's and the
# batch's ids (apps/ops/logcontext.py); the default stays readable for `make run`.
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(batch_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^ready$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
