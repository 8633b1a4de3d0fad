"""Settings for the bipsync-partner web app and its Celery workers.

One flat module, read from the environment through the helpers in ``env.py``. Every variable is
documented in ``.env.example``. Production is the default: ``DEBUG`` must be switched on
explicitly, and without it ``SECRET_KEY``, ``DATABASE_URL``, ``REDIS_URL`` and
``TOKEN_ENCRYPTION_KEYS`` are required.
"""

from __future__ import annotations

from pathlib import Path

import django_stubs_ext

from bipsync_partner.env import (
    ImproperlyConfiguredEnv,
    database_from_url,
    env_bool,
    env_int,
    env_list,
    env_optional,
    env_str,
)
from bipsync_partner.ops.logs import logging_config

# Lets classes such as admin.ModelAdmin[Model] be subscripted at run time, as django-stubs types them.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

if DEBUG:
    # A development key is fine only when DEBUG is on; production refuses to start without one.
    SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-key-do-not-use-in-production")
else:
    SECRET_KEY = env_str("SECRET_KEY", "")
    if len(SECRET_KEY) < 32:
        raise ImproperlyConfiguredEnv(
            "SECRET_KEY must be set to a random string of at least 32 characters when DEBUG is off."
        )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "accounts",
    "bipsync_partner.connections",
    "bipsync_partner.sync",
    "bipsync_partner.writes",
    "bipsync_partner.feed",
    "bipsync_partner.api",
    # Its templates and static files: the API's docs page (Swagger UI, served from here).
    "ninja",
    "bipsync_partner.events",
    "bipsync_partner.ops",
]

MIDDLEWARE = [
    "bipsync_partner.ops.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Django's, with a session the database cannot save answered as the outage it is.
    "bipsync_partner.ops.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Innermost, so that it sees the views' exceptions: PostgreSQL or Redis down is a 503 with a
    # sentence, not a 500.
    "bipsync_partner.ops.middleware.DependencyUnavailableMiddleware",
]

ROOT_URLCONF = "bipsync_partner.urls"
WSGI_APPLICATION = "bipsync_partner.wsgi.application"

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
                "accounts.context_processors.teams",
                "bipsync_partner.connections.notifications.banner",
            ],
        },
    },
]

# --- Database and Redis -------------------------------------------------------------------------
_default_db = "postgres://postgres@127.0.0.1:5432/bipsync_partner" if DEBUG else None
DATABASE_URL = env_str("DATABASE_URL", _default_db)
DATABASES = {"default": database_from_url(DATABASE_URL)}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0" if DEBUG else None)
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "bipsync-partner"),
    }
}

# --- Auth -----------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# How long a team invitation link works (seconds; a week by default). Each link works once.
TEAM_INVITE_MAX_AGE_SECONDS = env_int("TEAM_INVITE_MAX_AGE_SECONDS", 7 * 24 * 3600, minimum=60)

# --- Security ---------------------------------------------------------------------------------------
SESSION_COOKIE_NAME = "bipsync_partner_session"
CSRF_COOKIE_NAME = "bipsync_partner_csrftoken"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
# Lax keeps the session cookie on the top-level redirect back from Bipsync to our callback.
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
# HSTS for this host's subdomains too, and the "preload" directive (which alone submits nothing:
# the preload list takes only registrable domains submitted by their owners). Both on in production
# so that `manage.py check --deploy` passes; switch off if a subdomain must still answer on http.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# --- Internationalisation ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "bipsync_partner" / "static"]
WHITENOISE_USE_FINDERS = DEBUG
# Fixed here rather than left to WhiteNoise, which reads settings.DEBUG when its middleware is
# built: the test runner turns DEBUG off at run time, and a handler built then (every test
# client's first request) would scan and stat every static file of the finders, up front.
# In development the files are looked up per request, as WhiteNoise does by default there
# (https://whitenoise.readthedocs.io/en/stable/django.html#WHITENOISE_AUTOREFRESH).
WHITENOISE_AUTOREFRESH = DEBUG
# Files the app keeps (attachments waiting to be written to Bipsync), for the default storage.
MEDIA_ROOT = env_str("MEDIA_ROOT", str(BASE_DIR / "var" / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Email -----------------------------------------------------------------------------------------
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "bipsync-partner@localhost")
# The operators, comma separated, emailed about a grant incident (none: the log and metric only).
# Not Django's ADMINS: that would also mail them every server error's traceback.
OPERATOR_EMAILS = env_list("OPERATOR_EMAILS")

# --- Bipsync ------------------------------------------------------------------------------------------
# Tenant hosts are built from these templates and a validated slug, never from a URL a user types
# (docs/bipsync.md, "Tenants and hosts").
BIPSYNC_API_BASE_TEMPLATE = env_str("BIPSYNC_API_BASE_TEMPLATE", "https://{tenant}-api.bipsync.com")
BIPSYNC_WEB_BASE_TEMPLATE = env_str("BIPSYNC_WEB_BASE_TEMPLATE", "https://{tenant}.bipsync.com")
# Where a document opens in Bipsync's web app, after the tenant's web host; ``{id}`` is the
# document's id. Bipsync does not document the path (docs/bipsync.md, settings table).
BIPSYNC_DOCUMENT_URL_PATH = env_str("BIPSYNC_DOCUMENT_URL_PATH", "/research/{id}")
# Plain http is accepted only for loopback hosts and only when this is on (the local sandbox).
BIPSYNC_ALLOW_INSECURE_LOOPBACK = env_bool("BIPSYNC_ALLOW_INSECURE_LOOPBACK", DEBUG)
# The partner's confidential application for the user authorization-code flow.
BIPSYNC_USER_CLIENT_ID = env_optional("BIPSYNC_USER_CLIENT_ID")
BIPSYNC_USER_CLIENT_SECRET = env_optional("BIPSYNC_USER_CLIENT_SECRET")
# The service-account variation: by default a second application registered as a service account.
BIPSYNC_SERVICE_CLIENT_ID = env_optional("BIPSYNC_SERVICE_CLIENT_ID")
BIPSYNC_SERVICE_CLIENT_SECRET = env_optional("BIPSYNC_SERVICE_CLIENT_SECRET")
# A public application (no secret) for the device grant used from the command line.
BIPSYNC_PUBLIC_CLIENT_ID = env_optional("BIPSYNC_PUBLIC_CLIENT_ID")
BIPSYNC_SCOPES = env_str("BIPSYNC_SCOPES", "rest_api:read rest_api:fields:read")
# What writing to Bipsync needs (docs/bipsync.md, "Scopes": POST/PUT/DELETE need rest_api:write).
# A team's connections need these once the team writes; its connection pages then offer a
# re-consent that asks for them.
BIPSYNC_WRITE_SCOPES = env_str("BIPSYNC_WRITE_SCOPES", "rest_api:write")
BIPSYNC_HTTP_TIMEOUT = env_int("BIPSYNC_HTTP_TIMEOUT", 15, minimum=1)
# Bipsync's GraphQL endpoint below the API base [doc], and the page size (``first``) the client
# asks for [choice] (docs/bipsync.md, "GraphQL").
BIPSYNC_GRAPHQL_PATH = env_str("BIPSYNC_GRAPHQL_PATH", "/v1/graphql")
BIPSYNC_GRAPHQL_PAGE_SIZE = env_int("BIPSYNC_GRAPHQL_PAGE_SIZE", 100, minimum=1)
# Refresh an access token when it expires within this many seconds.
BIPSYNC_TOKEN_LEEWAY_SECONDS = env_int("BIPSYNC_TOKEN_LEEWAY_SECONDS", 60, minimum=0)
# Bipsync does not document when a refresh token lapses; 30 days is our default [choice].
BIPSYNC_REFRESH_TOKEN_LIFETIME_SECONDS = env_int(
    "BIPSYNC_REFRESH_TOKEN_LIFETIME_SECONDS", 30 * 86400, minimum=60
)
# How long a process waits for another's refresh of the same connection before giving up.
BIPSYNC_REFRESH_LOCK_TIMEOUT_SECONDS = env_int(
    "BIPSYNC_REFRESH_LOCK_TIMEOUT_SECONDS", 2 * BIPSYNC_HTTP_TIMEOUT + 15, minimum=1
)
# Back-off after transient refresh failures: base * 2^failures with jitter, capped.
BIPSYNC_REFRESH_BACKOFF_BASE_SECONDS = env_int(
    "BIPSYNC_REFRESH_BACKOFF_BASE_SECONDS", 30, minimum=1
)
BIPSYNC_REFRESH_BACKOFF_CAP_SECONDS = env_int(
    "BIPSYNC_REFRESH_BACKOFF_CAP_SECONDS", 3600, minimum=1
)
# A circuit breaker per tenant (connections/breaker.py): this many transient token-endpoint
# failures in a row at one tenant, none further than the window from the previous one, stop every
# process calling it for the cool-down; then one probe decides. 5 failures in 2 minutes: more than
# one connection's bad luck, since each connection backs off on its own from 30 s.
BIPSYNC_BREAKER_FAILURES = env_int("BIPSYNC_BREAKER_FAILURES", 5, minimum=1)
BIPSYNC_BREAKER_WINDOW_SECONDS = env_int("BIPSYNC_BREAKER_WINDOW_SECONDS", 120, minimum=1)
# Two minutes: well inside the refresh window (10 min), so a short outage costs no token.
BIPSYNC_BREAKER_COOLDOWN_SECONDS = env_int("BIPSYNC_BREAKER_COOLDOWN_SECONDS", 120, minimum=1)
# The fleet-wide guard (connections/incidents.py): this many distinct connections refused with
# invalid_grant/invalid_client within the window are an incident (a wrong secret deployed, a
# Bipsync incident), not dead connections: they keep their tokens and retry after about RETRY
# seconds (jittered; keep it below the window, so that a lasting cause keeps the incident on).
BIPSYNC_GRANT_INCIDENT_THRESHOLD = env_int("BIPSYNC_GRANT_INCIDENT_THRESHOLD", 20, minimum=2)
BIPSYNC_GRANT_INCIDENT_WINDOW_SECONDS = env_int(
    "BIPSYNC_GRANT_INCIDENT_WINDOW_SECONDS", 1800, minimum=1
)
BIPSYNC_GRANT_INCIDENT_RETRY_SECONDS = env_int(
    "BIPSYNC_GRANT_INCIDENT_RETRY_SECONDS", 600, minimum=1
)
# How long a tenant's RFC 8414 metadata is cached.
BIPSYNC_METADATA_TTL = env_int("BIPSYNC_METADATA_TTL", 3600, minimum=0)
# How long a started "Connect Bipsync" may take before its state is refused (RFC 6749 §10.12).
BIPSYNC_PENDING_AUTHORIZATION_SECONDS = env_int(
    "BIPSYNC_PENDING_AUTHORIZATION_SECONDS", 600, minimum=30
)
# The longest authorization code the callback accepts; a longer one is refused before any token
# request. Bipsync documents no size (RFC 6749 §4.1.2 asks servers to); the sandbox's are 48.
BIPSYNC_MAX_AUTHORIZATION_CODE_LENGTH = env_int(
    "BIPSYNC_MAX_AUTHORIZATION_CODE_LENGTH", 2048, minimum=16
)
# "Connect Bipsync" attempts (each asks Bipsync for the tenant's metadata and stores a pending
# authorization) per user and per team in a window, counted in Redis; more get a 429 page.
# A person clicks a few times; 10 a minute each and 60 a minute per team leave room for that.
CONNECT_RATE_LIMIT_WINDOW_SECONDS = env_int("CONNECT_RATE_LIMIT_WINDOW_SECONDS", 60, minimum=1)
CONNECT_RATE_LIMIT_PER_USER = env_int("CONNECT_RATE_LIMIT_PER_USER", 10, minimum=1)
CONNECT_RATE_LIMIT_PER_TEAM = env_int("CONNECT_RATE_LIMIT_PER_TEAM", 60, minimum=1)
# Pending authorizations (started, neither used nor expired) allowed at once, per user and per
# team: the bound on stored rows, enforced in PostgreSQL even when Redis is down.
CONNECT_PENDING_LIMIT_PER_USER = env_int("CONNECT_PENDING_LIMIT_PER_USER", 20, minimum=1)
CONNECT_PENDING_LIMIT_PER_TEAM = env_int("CONNECT_PENDING_LIMIT_PER_TEAM", 200, minimum=1)
# How long a reconnect that came back as another Bipsync subject waits for confirmation.
BIPSYNC_SUBJECT_CHANGE_HOLD_SECONDS = env_int(
    "BIPSYNC_SUBJECT_CHANGE_HOLD_SECONDS", 600, minimum=30
)
# Device grant polling interval when the server sends none (RFC 8628 §3.2 says 5 s; Bipsync sends
# none [doc]). Only lower it against a server that accepts it (the sandbox's device_interval).
BIPSYNC_DEVICE_POLL_INTERVAL_SECONDS = env_int("BIPSYNC_DEVICE_POLL_INTERVAL_SECONDS", 5, minimum=1)
# [choice] Bipsync documents no way to learn whom a token acts as: these additional token-response
# parameters (RFC 6749 §5.1) name it when present (the sandbox sends them); empty = do not look.
BIPSYNC_TOKEN_SUBJECT_PARAMETER = env_str("BIPSYNC_TOKEN_SUBJECT_PARAMETER", "subject")
BIPSYNC_TOKEN_SUBJECT_NAME_PARAMETER = env_str(
    "BIPSYNC_TOKEN_SUBJECT_NAME_PARAMETER", "subject_name"
)
# [choice] The same for the Bipsync team a service-account or team token acts in (its 24-hex id
# and its name), shown when a reconnect changes whom a connection acts as; empty = do not look.
BIPSYNC_TOKEN_SUBJECT_TEAM_PARAMETER = env_str(
    "BIPSYNC_TOKEN_SUBJECT_TEAM_PARAMETER", "subject_team"
)
BIPSYNC_TOKEN_SUBJECT_TEAM_NAME_PARAMETER = env_str(
    "BIPSYNC_TOKEN_SUBJECT_TEAM_NAME_PARAMETER", "subject_team_name"
)

# Where whom a token acts as comes from: "token_response" (the parameters above; Bipsync
# documents none, the sandbox sends them) or "graphql_me" (the GraphQL ``me`` query with the new
# token; not documented by Bipsync either, the sandbox offers it). Neither is known to exist at
# Bipsync: without an answer the subject stays empty and the subject-change check cannot apply.
BIPSYNC_IDENTITY_SOURCE = env_str("BIPSYNC_IDENTITY_SOURCE", "token_response")
if BIPSYNC_IDENTITY_SOURCE not in ("token_response", "graphql_me"):
    raise ImproperlyConfiguredEnv(
        "BIPSYNC_IDENTITY_SOURCE must be token_response or graphql_me, "
        f"not {BIPSYNC_IDENTITY_SOURCE!r}."
    )

# Token encryption keys, comma separated, newest first: the first encrypts, all decrypt.
TOKEN_ENCRYPTION_KEYS = env_list("TOKEN_ENCRYPTION_KEYS")
if not TOKEN_ENCRYPTION_KEYS and not DEBUG:
    raise ImproperlyConfiguredEnv(
        "TOKEN_ENCRYPTION_KEYS must hold at least one key; see .env.example for how to make one."
    )

# --- Celery -------------------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 600, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 660, minimum=1)
# How many tasks a worker process runs on one database connection. Celery's Django fixup closes
# the connections before and after every task unless this is set (celery/fixups/django.py), so
# that each task paid a new PostgreSQL session; between tasks, CONN_MAX_AGE and
# CONN_HEALTH_CHECKS decide instead, as they do between requests (bipsync_partner/celery.py).
# 0 restores a new connection per task.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000, minimum=0)
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {"visibility_timeout": 3600}
# Optional prefix of every broker key (kombu's global_keyprefix), so that several deployments or
# test sessions can share one Redis server without their workers taking each other's tasks.
if _broker_prefix := env_optional("CELERY_BROKER_KEY_PREFIX"):
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = _broker_prefix
# Refreshes and syncs have their own queues so that a long sync never delays a refresh: run at
# least one worker on "refresh" (the Procfile's worker takes all three queues).
CELERY_TASK_ROUTES: dict[str, dict[str, str]] = {
    "connections.refresh_batch": {"queue": "refresh"},
    "connections.sweep_refreshes": {"queue": "refresh"},
    "sync.run_sync": {"queue": "sync"},
    "sync.refresh_statistics": {"queue": "default"},
    "sync.sweep_due_syncs": {"queue": "default"},
    # Writes to Bipsync have a queue of their own: a burst of 10,000 notes must not delay a sync
    # or a refresh (run a worker on "writes"; the Procfile's worker takes every queue).
    "writes.deliver": {"queue": "writes"},
    "writes.sweep": {"queue": "writes"},
    "sync.forget_connection": {"queue": "default"},
    "api.prune_idempotency_keys": {"queue": "default"},
    # Outbound events have a queue of their own: a slow customer endpoint must not hold up
    # writes, syncs or refreshes (the Procfile's worker takes every queue).
    "events.deliver_endpoint": {"queue": "events"},
    "events.deliver": {"queue": "events"},
    "events.sweep": {"queue": "events"},
    # Not the sync queue: a poll or a hint must not wait behind a long full scan.
    "sync.sweep_new_research": {"queue": "default"},
    "sync.poll_new_research": {"queue": "default"},
    "sync.refetch_documents": {"queue": "default"},
}
# The schedule lives here, in code, not in the database (django-celery-beat): beat only fires a
# few fixed sweeps that are part of the product's correctness, reviewed and versioned with
# it. What varies per connection (when it is due, its interval, whether it is enabled) lives on
# rows that the sweeps read (connections' expiries and next_retry_at, sync schedules' next_due_at),
# so 10,000 connections are a few beat entries, not 10,000, and a schedule changed in the UI takes
# effect at the next sweep without beat reloading anything. Run exactly one beat process.
# ``expires`` drops a sweep that could not start within its period: the next one does its work.
WRITES_SWEEP_INTERVAL_SECONDS = env_int("WRITES_SWEEP_INTERVAL_SECONDS", 30, minimum=1)
EVENTS_SWEEP_INTERVAL_SECONDS = env_int("EVENTS_SWEEP_INTERVAL_SECONDS", 30, minimum=1)
# [choice] Between full scans, each syncing connection asks GraphQL for its newest research
# (sorted by creation, newest first) every this many seconds and stores what it does not know
# yet, stopping at the first document it knows; 0 turns the poll off. Edits and deletions still
# come from the full scan (Bipsync documents no "modified since", docs/bipsync.md).
BIPSYNC_NEW_RESEARCH_POLL_SECONDS = env_int("BIPSYNC_NEW_RESEARCH_POLL_SECONDS", 30, minimum=0)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "refresh-sweep": {
        "task": "connections.sweep_refreshes",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "syncs-due-sweep": {
        "task": "sync.sweep_due_syncs",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # New research between full scans (every BIPSYNC_NEW_RESEARCH_POLL_SECONDS, 0: off).
    **(
        {
            "new-research-sweep": {
                "task": "sync.sweep_new_research",
                "schedule": float(BIPSYNC_NEW_RESEARCH_POLL_SECONDS),
                "options": {"expires": max(1, BIPSYNC_NEW_RESEARCH_POLL_SECONDS - 1)},
            }
        }
        if BIPSYNC_NEW_RESEARCH_POLL_SECONDS
        else {}
    ),
    # Writes whose retry is due, and ones whose queueing was lost or whose worker died.
    "writes-sweep": {
        "task": "writes.sweep",
        "schedule": float(WRITES_SWEEP_INTERVAL_SECONDS),
        "options": {"expires": 25},
    },
    # Event deliveries whose message was lost (a broker restart, a killed worker).
    "events-sweep": {
        "task": "events.sweep",
        "schedule": float(EVENTS_SWEEP_INTERVAL_SECONDS),
        "options": {"expires": 25},
    },
    # Idempotency-Key rows past API_IDEMPOTENCY_KEY_HOURS.
    "idempotency-keys-prune": {
        "task": "api.prune_idempotency_keys",
        "schedule": 3600.0,
        "options": {"expires": 3000},
    },
}
CELERY_TIMEZONE = "UTC"
# Keys of the Redis coordination primitives (rate-limit gates, per-tenant slots, "queued once"
# markers; bipsync_partner/coordination.py).
COORDINATION_KEY_PREFIX = env_str("COORDINATION_KEY_PREFIX", "bipsync-partner:coord")

# --- Proactive token refresh (bipsync_partner/connections/sweep.py) ---------------------------------
# Refresh access tokens expiring within this many seconds (Bipsync issues 3600 s tokens).
REFRESH_ACCESS_WINDOW_SECONDS = env_int("REFRESH_ACCESS_WINDOW_SECONDS", 600, minimum=0)
# Rotate refresh tokens this long before they lapse (30 days at Bipsync [choice]), so that a
# connection nobody used for a month does not die.
REFRESH_REFRESH_WINDOW_SECONDS = env_int("REFRESH_REFRESH_WINDOW_SECONDS", 3 * 86400, minimum=0)
# Each queued batch of refreshes waits a random 0..N seconds so that due connections do not hit a
# tenant at once.
REFRESH_JITTER_SECONDS = env_int("REFRESH_JITTER_SECONDS", 30, minimum=0)
# Concurrent refreshes per tenant, across all workers.
REFRESH_TENANT_CONCURRENCY = env_int("REFRESH_TENANT_CONCURRENCY", 4, minimum=1)
# How long a "queued" marker lives if the task never ends (a killed worker).
REFRESH_QUEUED_TTL_SECONDS = env_int("REFRESH_QUEUED_TTL_SECONDS", 900, minimum=10)
REFRESH_SWEEP_BATCH = env_int("REFRESH_SWEEP_BATCH", 1000, minimum=1)
# Refreshes per task: one Celery task costs a worker more CPU than a refresh's own work, so
# the sweep queues a tenant's due connections in batches (bench/README.md, "Refresh sweep").
REFRESH_BATCH_SIZE = env_int("REFRESH_BATCH_SIZE", 50, minimum=1)
# Threads working one batch; still one request to Bipsync in flight per batch, but the next
# refresh's database work overlaps the current request (1 = strictly one after the other).
REFRESH_BATCH_PIPELINE = env_int("REFRESH_BATCH_PIPELINE", 2, minimum=1)
REFRESH_TASK_SOFT_TIME_LIMIT = env_int("REFRESH_TASK_SOFT_TIME_LIMIT", 60, minimum=1)
REFRESH_TASK_TIME_LIMIT = env_int("REFRESH_TASK_TIME_LIMIT", 90, minimum=1)

# --- Research sync (bipsync_partner/sync/) ------------------------------------------------------------
SYNC_PAGE_SIZE = env_int("SYNC_PAGE_SIZE", 100, minimum=1)  # Bipsync's maximum [choice]
SYNC_DEFAULT_INTERVAL_SECONDS = env_int("SYNC_DEFAULT_INTERVAL_SECONDS", 3600, minimum=1)
SYNC_TENANT_CONCURRENCY = env_int("SYNC_TENANT_CONCURRENCY", 2, minimum=1)
# A run works in slices: when the soft limit strikes it stops at a page boundary and queues its
# own continuation, so that no task outlives the broker's visibility timeout (which would make
# Redis hand the message to a second worker while the first still runs).
SYNC_TASK_SOFT_TIME_LIMIT = env_int("SYNC_TASK_SOFT_TIME_LIMIT", 900, minimum=1)
SYNC_TASK_TIME_LIMIT = env_int("SYNC_TASK_TIME_LIMIT", 960, minimum=1)
# A queued run whose task has not started after this long is queued again (a lost message or
# a killed worker); a running run whose lock is free is resumed at once.
SYNC_REQUEUE_AFTER_SECONDS = env_int("SYNC_REQUEUE_AFTER_SECONDS", 600, minimum=1)
# Transient failures of a run (Bipsync down after the client's own retries) before it fails.
SYNC_MAX_ATTEMPTS = env_int("SYNC_MAX_ATTEMPTS", 5, minimum=1)
# The API client: attempts for 5xx/timeouts, backoff base and cap, and the longest Retry-After it
# sleeps through inside a task (longer waits put the run back on the queue for later).
SYNC_HTTP_ATTEMPTS = env_int("SYNC_HTTP_ATTEMPTS", 5, minimum=1)
SYNC_BACKOFF_BASE_MS = env_int("SYNC_BACKOFF_BASE_MS", 500, minimum=1)
SYNC_BACKOFF_CAP_MS = env_int("SYNC_BACKOFF_CAP_MS", 10000, minimum=1)
SYNC_MAX_INLINE_WAIT_SECONDS = env_int("SYNC_MAX_INLINE_WAIT_SECONDS", 30, minimum=0)
SYNC_RATE_LIMIT_ATTEMPTS = env_int("SYNC_RATE_LIMIT_ATTEMPTS", 10, minimum=1)
# A complete scan that would mark more than this percent of a connection's stored documents
# deleted reads the list a second time first, and marks deleted only what neither scan saw: a
# mass deletion is more often a listing fault (a lost share, a backend hiccup) than research
# removed, and a wrong deletion hides research from every member until the next run.
SYNC_CONFIRM_DELETIONS_PERCENT = env_int("SYNC_CONFIRM_DELETIONS_PERCENT", 20, minimum=0)
# The resources each run reads through GraphQL after the research (bipsync_partner/sync/
# resources.py): users, classifications, categories, contacts, projects, note_bodies,
# attachments. Each needs its GraphQL scope (add them to BIPSYNC_SCOPES); a connection without
# it skips that resource with a note on the run.
SYNC_RESOURCES = env_list(
    "SYNC_RESOURCES",
    [
        "users",
        "classifications",
        "categories",
        "contacts",
        "projects",
        "note_bodies",
        "attachments",
    ],
)
# Where an attachment's bytes are read, after the tenant's API base ({document}, {attachment}:
# Bipsync ids). Bipsync does not document a download [choice]; the sandbox serves this path.
BIPSYNC_ATTACHMENT_DOWNLOAD_PATH = env_str(
    "BIPSYNC_ATTACHMENT_DOWNLOAD_PATH",
    "/v2/research/note/{document}/attachment/{attachment}/download",
)
# --- Fresher than a full scan (bipsync_partner/sync/fresh.py, hints.py) ------------------------
# (BIPSYNC_NEW_RESEARCH_POLL_SECONDS is with beat's schedule above.)
# Documents per page of that poll, and the pages it reads at most before leaving the rest to
# the full scan (a burst of new research larger than that is the full scan's).
BIPSYNC_NEW_RESEARCH_POLL_PAGE_SIZE = env_int("BIPSYNC_NEW_RESEARCH_POLL_PAGE_SIZE", 20, minimum=1)
BIPSYNC_NEW_RESEARCH_POLL_MAX_PAGES = env_int("BIPSYNC_NEW_RESEARCH_POLL_MAX_PAGES", 5, minimum=1)
# Rules-engine webhooks as a hint (docs/bipsync.md, "Webhooks"): the receiver reads at most this
# many bytes of a body and this many document ids from it, and accepts at most RATE_LIMIT calls
# per connection per window (counted in Redis); more is answered 413 / 429.
BIPSYNC_WEBHOOK_MAX_BODY_BYTES = env_int("BIPSYNC_WEBHOOK_MAX_BODY_BYTES", 65536, minimum=1)
BIPSYNC_WEBHOOK_MAX_IDS = env_int("BIPSYNC_WEBHOOK_MAX_IDS", 100, minimum=1)
BIPSYNC_WEBHOOK_RATE_LIMIT = env_int("BIPSYNC_WEBHOOK_RATE_LIMIT", 120, minimum=1)
BIPSYNC_WEBHOOK_RATE_WINDOW_SECONDS = env_int("BIPSYNC_WEBHOOK_RATE_WINDOW_SECONDS", 60, minimum=1)
# Workers log through Django's LOGGING (JSON, ids, redaction) instead of Celery's own setup.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Writes to Bipsync (bipsync_partner/writes/) -------------------------------------------------
# The source of the external id every note, attachment and upsert the app writes carries; the
# deliverer finds what an unanswered request did by it (docs/bipsync.md, "Writing ...").
BIPSYNC_WRITE_EXTERNAL_ID_SOURCE = env_str("BIPSYNC_WRITE_EXTERNAL_ID_SOURCE", "bipsync-partner")
# [choice] Bipsync documents externalIds on notes but not how to search by them: a GET of this
# path with the two query parameters below.
BIPSYNC_NOTE_LOOKUP_PATH = env_str("BIPSYNC_NOTE_LOOKUP_PATH", "/v2/research/note")
BIPSYNC_NOTE_LOOKUP_SOURCE_PARAM = env_str("BIPSYNC_NOTE_LOOKUP_SOURCE_PARAM", "externalIds.source")
BIPSYNC_NOTE_LOOKUP_VALUE_PARAM = env_str("BIPSYNC_NOTE_LOOKUP_VALUE_PARAM", "externalIds.value")
# [choice] Updating a note by id: this method on /v2/research/note/{id}.
BIPSYNC_NOTE_UPDATE_METHOD = env_str("BIPSYNC_NOTE_UPDATE_METHOD", "PUT")
# [choice] An attachment's bytes: the raw body of this method to the address in this member of
# the metadata answer (the Bearer token goes along only when it is on the tenant's API host).
# The note's attachments are listed at /v2/research/note/{id}/attachment to find one whose answer
# was lost.
BIPSYNC_ATTACHMENT_UPLOAD_METHOD = env_str("BIPSYNC_ATTACHMENT_UPLOAD_METHOD", "PUT")
BIPSYNC_ATTACHMENT_UPLOAD_URL_MEMBER = env_str("BIPSYNC_ATTACHMENT_UPLOAD_URL_MEMBER", "uploadUrl")
# Files larger than this are refused when the write is asked for (bytes; 1 GiB).
WRITES_ATTACHMENT_MAX_BYTES = env_int("WRITES_ATTACHMENT_MAX_BYTES", 1024**3, minimum=1)
# A claimed write belongs to its worker this long; a killed worker's write is sent again (after
# a look-up) only once its lease ran out. Keep it above WRITES_TASK_TIME_LIMIT.
WRITES_LEASE_SECONDS = env_int("WRITES_LEASE_SECONDS", 600, minimum=1)
WRITES_TASK_SOFT_TIME_LIMIT = env_int("WRITES_TASK_SOFT_TIME_LIMIT", 540, minimum=1)
WRITES_TASK_TIME_LIMIT = env_int("WRITES_TASK_TIME_LIMIT", 570, minimum=1)
if not WRITES_TASK_SOFT_TIME_LIMIT < WRITES_TASK_TIME_LIMIT < WRITES_LEASE_SECONDS:
    # A task still running when its lease lapses could send alongside the worker taking over.
    raise ImproperlyConfiguredEnv(
        "WRITES_TASK_SOFT_TIME_LIMIT < WRITES_TASK_TIME_LIMIT < WRITES_LEASE_SECONDS must hold."
    )
# Retries of a write that failed for a reason that may pass: backoff base and cap, and how many
# attempts before it is marked failed (with its last error) for a person to look at.
WRITES_BACKOFF_BASE_MS = env_int("WRITES_BACKOFF_BASE_MS", 2000, minimum=1)
WRITES_BACKOFF_CAP_MS = env_int("WRITES_BACKOFF_CAP_MS", 600000, minimum=1)
WRITES_MAX_ATTEMPTS = env_int("WRITES_MAX_ATTEMPTS", 25, minimum=1)
# A run of a team's deliverer (one task) delivers its due writes one after another, up to this
# many or for about this long (capped at half of WRITES_TASK_SOFT_TIME_LIMIT), then queues the
# next run: the task's cost and the connection's reads are paid once per run, not per write.
WRITES_BATCH_SIZE = env_int("WRITES_BATCH_SIZE", 200, minimum=1)
WRITES_BATCH_SECONDS = env_int("WRITES_BATCH_SECONDS", 60, minimum=1)
# A run claims this many writes in one statement (one durable commit) and records the delivered
# ones of the group in one transaction after sending them; 1 claims and records write by write.
WRITES_GROUP_SIZE = env_int("WRITES_GROUP_SIZE", 10, minimum=1)
# Teams with due writes queued per sweep.
WRITES_SWEEP_BATCH = env_int("WRITES_SWEEP_BATCH", 2000, minimum=1)
# --- The HTTP API (bipsync_partner/api/) ---------------------------------------------------------
# Page sizes of the API's lists (?limit=): the default and the largest allowed.
API_PAGE_SIZE_DEFAULT = env_int("API_PAGE_SIZE_DEFAULT", 50, minimum=1)
API_PAGE_SIZE_MAX = env_int("API_PAGE_SIZE_MAX", 1000, minimum=1)
# How long an Idempotency-Key answers with its first write (bipsync_partner/api/idempotency.py).
API_IDEMPOTENCY_KEY_HOURS = env_int("API_IDEMPOTENCY_KEY_HOURS", 24, minimum=1)
# The change feed's default page (/api/v1/changes).
API_CHANGES_PAGE_SIZE_DEFAULT = env_int("API_CHANGES_PAGE_SIZE_DEFAULT", 500, minimum=1)
# An API key's last use is written at most once per this many seconds.
API_KEY_LAST_USED_RESOLUTION_SECONDS = env_int(
    "API_KEY_LAST_USED_RESOLUTION_SECONDS", 60, minimum=0
)
# The most a note written through the API may carry in attachments (decoded bytes, base64 in
# the JSON body; 1 MiB, which keeps the body under Django's DATA_UPLOAD_MAX_MEMORY_SIZE).
API_NOTE_ATTACHMENTS_MAX_BYTES = env_int("API_NOTE_ATTACHMENTS_MAX_BYTES", 1024**2, minimum=1)
# --- Outbound events (bipsync_partner/events/; queue "events") ------------------------------------
# Endpoints must be https:// (plain http:// too when DEBUG or this is on).
EVENTS_ALLOW_HTTP = env_bool("EVENTS_ALLOW_HTTP", False)
# Endpoints whose host resolves to a private, loopback, link-local or reserved address are refused
# (checked when saved and before every send) unless this is on: development and tests only.
EVENTS_ALLOW_PRIVATE_ADDRESSES = env_bool("EVENTS_ALLOW_PRIVATE_ADDRESSES", False)
# Seconds an endpoint has to answer one delivery.
EVENTS_TIMEOUT_SECONDS = env_int("EVENTS_TIMEOUT_SECONDS", 10, minimum=1)
# A failing delivery is retried (back-off with jitter, base and cap in ms, never sooner than a
# 429's Retry-After) for this long after its first attempt, then failed and the admins emailed;
# an endpoint whose deliveries all failed for this long is disabled. 3 days by default.
EVENTS_RETRY_PERIOD_SECONDS = env_int("EVENTS_RETRY_PERIOD_SECONDS", 3 * 24 * 3600, minimum=1)
EVENTS_BACKOFF_BASE_MS = env_int("EVENTS_BACKOFF_BASE_MS", 5000, minimum=1)
EVENTS_BACKOFF_CAP_MS = env_int("EVENTS_BACKOFF_CAP_MS", 3600 * 1000, minimum=1)
# After a secret rotation deliveries are signed with the old secret too, this long (24 h).
EVENTS_SECRET_OVERLAP_SECONDS = env_int("EVENTS_SECRET_OVERLAP_SECONDS", 24 * 3600, minimum=0)
# A worker's claim on a delivery; above the task's time limit (55 s), so that a delivery is only
# taken over from a worker that is gone.
EVENTS_LEASE_SECONDS = env_int("EVENTS_LEASE_SECONDS", 60, minimum=56)
if EVENTS_TIMEOUT_SECONDS >= 50:
    raise ImproperlyConfiguredEnv("EVENTS_TIMEOUT_SECONDS must stay below the task's 50 s limit.")
# A run of an endpoint's deliverer claims its due deliveries in batches (a burst costs a few
# statements per batch instead of per event): at most this many, and after its first batch of 25
# as many as take about EVENTS_DELIVERY_BATCH_MS at the endpoint's pace, so that a slow
# endpoint's burst is shared between workers instead of held by one (bench/README.md).
EVENTS_DELIVERY_BATCH = env_int("EVENTS_DELIVERY_BATCH", 100, minimum=1)
EVENTS_DELIVERY_BATCH_MS = env_int("EVENTS_DELIVERY_BATCH_MS", 2000, minimum=1)
# How many runs share one endpoint's burst: its first run calls in this many less one at once,
# and the burst's last batches are shares of what is left among this many. About the events
# workers' concurrency (4 in deploy/).
EVENTS_DELIVERY_RUNS = env_int("EVENTS_DELIVERY_RUNS", 4, minimum=1)
# The sweep queues a run for each endpoint with a delivery due for longer than this (sooner ones
# have a run coming), at most this many endpoints per sweep.
EVENTS_SWEEP_GRACE_SECONDS = env_int("EVENTS_SWEEP_GRACE_SECONDS", 30, minimum=0)
EVENTS_SWEEP_BATCH = env_int("EVENTS_SWEEP_BATCH", 1000, minimum=1)
# --- Research browser (bipsync_partner/sync/browse.py) ----------------------------------------------
# Matching documents are counted exactly up to this many; above it the page says "more than …"
# (or "about …" from PostgreSQL's estimate when that is over four times this), and only this many
# rows are numbered pages (beyond: Older/Last links). Counting reads each match's row: 1,000 keeps
# a search within 50 ms at a million documents, 10,000 did not (bench/README.md).
RESEARCH_EXACT_COUNT_LIMIT = env_int("RESEARCH_EXACT_COUNT_LIMIT", 1000, minimum=1)

# --- Logging and metrics ----------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# JSON lines for log shippers in production; readable lines in development.
LOG_JSON = env_bool("LOG_JSON", not DEBUG)
LOGGING = logging_config(json_lines=LOG_JSON, level=LOG_LEVEL)
# When set, /metrics requires "Authorization: Bearer <this>".
METRICS_BEARER_TOKEN = env_optional("METRICS_BEARER_TOKEN")
