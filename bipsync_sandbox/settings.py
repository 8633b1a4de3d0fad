"""Settings of the Bipsync sandbox, a separate Django project with its own database.

Everything is read from the environment. The sandbox shares nothing with the partner app but the two
host templates (``BIPSYNC_API_BASE_TEMPLATE`` / ``BIPSYNC_WEB_BASE_TEMPLATE``). Every point the
Bipsync documentation leaves open (marked [choice] in the platform reference) is a setting here.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from bipsync_sandbox.envtools import (
    database_from_url,
    env_bool,
    env_int,
    env_list,
    env_str,
)
from bipsync_sandbox.hosts import HostTemplate

SANDBOX_DIR = Path(__file__).resolve().parent

DEBUG = env_bool("SANDBOX_DEBUG", False)

_secret = os.environ.get("SANDBOX_SECRET_KEY", "")
if not _secret:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SANDBOX_SECRET_KEY must be set (or SANDBOX_DEBUG=1 for a development default)."
        )
    _secret = "sandbox-development-only-secret-key-not-for-any-shared-deployment"
SECRET_KEY = _secret

# The admin HTTP API under /_sandbox/ is off (404) unless a key is configured.
SANDBOX_ADMIN_KEY = env_str("SANDBOX_ADMIN_KEY", "")

BIPSYNC_API_BASE_TEMPLATE = env_str(
    "BIPSYNC_API_BASE_TEMPLATE", "http://127.0.0.1:8100/t/{tenant}/api"
)
BIPSYNC_WEB_BASE_TEMPLATE = env_str(
    "BIPSYNC_WEB_BASE_TEMPLATE", "http://127.0.0.1:8100/t/{tenant}/web"
)
_api = HostTemplate(BIPSYNC_API_BASE_TEMPLATE, name="BIPSYNC_API_BASE_TEMPLATE")
_web = HostTemplate(BIPSYNC_WEB_BASE_TEMPLATE, name="BIPSYNC_WEB_BASE_TEMPLATE")

ALLOWED_HOSTS = env_list(
    "SANDBOX_ALLOWED_HOSTS",
    sorted({"127.0.0.1", "localhost", "[::1]", _api.allowed_host(), _web.allowed_host()}),
)

# --- OAuth behaviour ([doc] values as defaults; [choice] values overridable) -------------------
# Token lifetimes in seconds. The admin API can override them at run time (stored in the database
# so that every gunicorn worker sees them), globally or per application.
SANDBOX_ACCESS_TOKEN_LIFETIME = env_int("SANDBOX_ACCESS_TOKEN_LIFETIME", 3600, minimum=1)  # [doc]
SANDBOX_REFRESH_TOKEN_LIFETIME = env_int(
    "SANDBOX_REFRESH_TOKEN_LIFETIME", 30 * 24 * 3600, minimum=1
)  # [choice] 30 days
SANDBOX_AUTHORIZATION_CODE_LIFETIME = env_int(
    "SANDBOX_AUTHORIZATION_CODE_LIFETIME", 600, minimum=1
)  # [choice] 10 min, RFC 6749 §4.1.2
SANDBOX_DEVICE_CODE_LIFETIME = env_int("SANDBOX_DEVICE_CODE_LIFETIME", 60, minimum=1)  # [doc]
SANDBOX_DEVICE_POLL_INTERVAL = env_int("SANDBOX_DEVICE_POLL_INTERVAL", 5, minimum=0)  # RFC 8628
SANDBOX_DEVICE_SLOW_DOWN_STEP = env_int("SANDBOX_DEVICE_SLOW_DOWN_STEP", 5, minimum=0)  # RFC 8628
# [choice] Reusing a rotated refresh token revokes every token of the same grant (RFC 9700 §4.14.2).
SANDBOX_REFRESH_REUSE_REVOKES_GRANT = env_bool("SANDBOX_REFRESH_REUSE_REVOKES_GRANT", True)
# [doc] Bipsync's token response example has no "scope"; switch on to add it (RFC 6749 §5.1).
SANDBOX_TOKEN_RESPONSE_INCLUDES_SCOPE = env_bool("SANDBOX_TOKEN_RESPONSE_INCLUDES_SCOPE", False)
# [choice] Bipsync documents no way to learn whom a token acts as. The token response carries the
# additional parameters "subject" (24-hex id of the user, service account or team) and
# "subject_name", and for service-account and team tokens "subject_team" / "subject_team_name"
# (RFC 6749 §5.1 allows additional parameters; clients ignore unknown ones). The
# partner app reads them (BIPSYNC_TOKEN_SUBJECT_PARAMETER); switch off to see it cope without.
SANDBOX_TOKEN_RESPONSE_INCLUDES_SUBJECT = env_bool("SANDBOX_TOKEN_RESPONSE_INCLUDES_SUBJECT", True)
# (A run-time override of the switch above: PUT /_sandbox/api-settings
# {"token_response_includes_subject": false}, to run a client against a Bipsync that sends none.)
# [choice] token_type is spelled like Bipsync's example.
SANDBOX_TOKEN_TYPE = env_str("SANDBOX_TOKEN_TYPE", "bearer")
# [choice] How a client selects the service-account variation: "application" = the OAuth
# application itself is registered as a service-account application (the default), "parameter" =
# additionally accept ``account_type=service_account`` on the authorization request of an
# application that allows both.
SANDBOX_SERVICE_ACCOUNT_SELECTOR = env_str("SANDBOX_SERVICE_ACCOUNT_SELECTOR", "application")
if SANDBOX_SERVICE_ACCOUNT_SELECTOR not in {"application", "parameter"}:
    raise ImproperlyConfigured("SANDBOX_SERVICE_ACCOUNT_SELECTOR must be application or parameter.")
# http (not https) issuers are fine on loopback; elsewhere (a compose network) say so explicitly.
SANDBOX_INSECURE_TRANSPORT = env_bool("SANDBOX_INSECURE_TRANSPORT", False)
if SANDBOX_INSECURE_TRANSPORT:
    os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

# Sandbox users' passwords are demo passwords; a lower PBKDF2 work factor keeps seeding and test
# set-up fast. Client secrets are not hashed with PBKDF2 at all (see authserver.models).
SANDBOX_PASSWORD_ITERATIONS = env_int("SANDBOX_PASSWORD_ITERATIONS", 100_000, minimum=1)
PASSWORD_HASHERS = ["bipsync_sandbox.identity.hashers.SandboxPBKDF2PasswordHasher"]

# --- REST API (bipsync_sandbox.api) --------------------------------------------------------
# [doc] example page size 10; [choice] at most 100 per page, and what a larger ``limit`` gets:
# "clamp" (served 100, the envelope's ``limit`` says so) or "error" (400).
SANDBOX_API_PAGE_SIZE_DEFAULT = env_int("SANDBOX_API_PAGE_SIZE_DEFAULT", 10, minimum=1)
SANDBOX_API_PAGE_SIZE_MAX = env_int("SANDBOX_API_PAGE_SIZE_MAX", 100, minimum=1)
SANDBOX_API_PAGE_OVER_MAX = env_str("SANDBOX_API_PAGE_OVER_MAX", "clamp")
if SANDBOX_API_PAGE_OVER_MAX not in {"clamp", "error"}:
    raise ImproperlyConfigured("SANDBOX_API_PAGE_OVER_MAX must be clamp or error.")
# [choice] Per access token: at most N requests per window of W seconds (0 = no limit); the admin
# API can override both at run time. Over the limit: 429 with Retry-After.
SANDBOX_API_RATE_LIMIT = env_int("SANDBOX_API_RATE_LIMIT", 100, minimum=0)
SANDBOX_API_RATE_WINDOW = env_int("SANDBOX_API_RATE_WINDOW", 1, minimum=1)
# [doc] Bipsync answers 401 for a missing scope (RFC 6750 §3.1 would say 403).
SANDBOX_API_INSUFFICIENT_SCOPE_STATUS = env_int(
    "SANDBOX_API_INSUFFICIENT_SCOPE_STATUS", 401, minimum=400
)
# [choice] The Rules engine's webhook calls (bipsync_sandbox/api/rules.py): the receiver's time to
# answer, and the calls waiting in a worker process at most (more are dropped and logged).
SANDBOX_RULES_TIMEOUT_SECONDS = env_int("SANDBOX_RULES_TIMEOUT_SECONDS", 5, minimum=1)
SANDBOX_RULES_QUEUE_SIZE = env_int("SANDBOX_RULES_QUEUE_SIZE", 1000, minimum=1)
# [choice] Status of POST /v2/research/note (Bipsync documents only the returned ``id``).
SANDBOX_API_NOTE_CREATED_STATUS = env_int("SANDBOX_API_NOTE_CREATED_STATUS", 201, minimum=200)
# [choice] Looking notes up by external id: GET /v2/research/note with these two query
# parameters (Bipsync documents externalIds on notes, not how to search by them).
SANDBOX_NOTE_LOOKUP_SOURCE_PARAM = env_str("SANDBOX_NOTE_LOOKUP_SOURCE_PARAM", "externalIds.source")
SANDBOX_NOTE_LOOKUP_VALUE_PARAM = env_str("SANDBOX_NOTE_LOOKUP_VALUE_PARAM", "externalIds.value")
# [choice] Updating a note by id: this method on /v2/research/note/{id} (PUT or PATCH).
SANDBOX_NOTE_UPDATE_METHOD = env_str("SANDBOX_NOTE_UPDATE_METHOD", "PUT")
# [choice] Attachments' bytes: the metadata answer's "uploadUrl" takes them as the raw body of a
# PUT on the API host (same token). Larger uploads are refused with 413.
SANDBOX_ATTACHMENT_MAX_BYTES = env_int(
    "SANDBOX_ATTACHMENT_MAX_BYTES", 2 * 1024 * 1024 * 1024, minimum=1
)
# [choice] Status of an upsert that created its record (one that updated answers 200).
SANDBOX_INGEST_CREATED_STATUS = env_int("SANDBOX_INGEST_CREATED_STATUS", 201, minimum=200)

# --- GraphQL (bipsync_sandbox.api.graph) ----------------------------------------------------
# [doc] Limits of POST {api}/v1/graphql: depth 13, complexity 60,000, 5,000 ms, 1 MB request,
# 10 MB response (docs/bipsync.md, "GraphQL"). [choice] At most 100 per page (first/last).
SANDBOX_GRAPHQL_PAGE_SIZE_MAX = env_int("SANDBOX_GRAPHQL_PAGE_SIZE_MAX", 100, minimum=1)
SANDBOX_GRAPHQL_MAX_DEPTH = env_int("SANDBOX_GRAPHQL_MAX_DEPTH", 13, minimum=1)
SANDBOX_GRAPHQL_MAX_COMPLEXITY = env_int("SANDBOX_GRAPHQL_MAX_COMPLEXITY", 60_000, minimum=1)
SANDBOX_GRAPHQL_TIMEOUT_MS = env_int("SANDBOX_GRAPHQL_TIMEOUT_MS", 5_000, minimum=1)
SANDBOX_GRAPHQL_MAX_REQUEST_BYTES = env_int(
    "SANDBOX_GRAPHQL_MAX_REQUEST_BYTES", 1024 * 1024, minimum=1
)
SANDBOX_GRAPHQL_MAX_RESPONSE_BYTES = env_int(
    "SANDBOX_GRAPHQL_MAX_RESPONSE_BYTES", 10 * 1024 * 1024, minimum=1
)
# [choice, not documented by Bipsync] The ``me`` root field: whom the token acts as.
SANDBOX_GRAPHQL_ME_ENABLED = env_bool("SANDBOX_GRAPHQL_ME_ENABLED", True)
# [choice] Attachments' bytes are read back at this path below the API base ({note}, {attachment}).
SANDBOX_ATTACHMENT_DOWNLOAD_PATH = env_str(
    "SANDBOX_ATTACHMENT_DOWNLOAD_PATH",
    "/v2/research/note/{note}/attachment/{attachment}/download",
)

# --- Django --------------------------------------------------------------------------------------
INSTALLED_APPS = [
    "bipsync_sandbox.identity",
    "bipsync_sandbox.authserver",
    "bipsync_sandbox.control",
    "bipsync_sandbox.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "bipsync_sandbox.middleware.TenantRoutingMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "bipsync_sandbox.urls"
WSGI_APPLICATION = "bipsync_sandbox.wsgi.application"

DATABASES = {
    "default": database_from_url(
        env_str("SANDBOX_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bipsync_sandbox"),
        name="SANDBOX_DATABASE_URL",
        synchronous_commit=env_bool("SANDBOX_DB_SYNCHRONOUS_COMMIT", False),
        server_side_binding=env_bool("SANDBOX_DB_SERVER_SIDE_BINDING", True),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [SANDBOX_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csrf",
            ],
        },
    }
]

# Own cookie names: cookies do not separate by port, and the partner app runs on the same host.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
SESSION_COOKIE_NAME = "bipsync_sandbox_session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 8 * 3600
CSRF_COOKIE_NAME = "bipsync_sandbox_csrftoken"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_TRUSTED_ORIGINS = env_list("SANDBOX_CSRF_TRUSTED_ORIGINS", [])
SESSION_COOKIE_SECURE = env_bool("SANDBOX_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# "same-origin", not "no-referrer": with no-referrer browsers send "Origin: null" on form posts,
# which Django's CSRF check refuses; same-origin still keeps URLs from leaking to other sites.
SECURE_REFERRER_POLICY = "same-origin"
APPEND_SLASH = False

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"
USE_I18N = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("SANDBOX_LOG_LEVEL", "WARNING")},
}
