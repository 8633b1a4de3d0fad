"""Log formatting: JSON lines in production, readable lines in development, never a token.

Every record gets ``request_id`` and ``connection_id`` from ``ops.context``. The redaction filter is
a last line of defence: code must not log secrets in the first place, but if a library echoes a
request (an Authorization header, a token response), the value is masked before it is written.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from bipsync_partner.ops import context

_SECRET_PATTERNS = [
    # Authorization: Bearer <token> / Basic <credentials>
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*"),
    # access_token=..., "refresh_token": "...", client_secret: ..., code=..., device_code=...
    re.compile(
        r"(?i)([\"']?(?:access_token|refresh_token|id_token|client_secret|device_code|code_verifier"
        r"|user_code|password|(?<!\w)code)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}]+"
    ),
]


def redact(text: str) -> str:
    text = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)} [redacted]", text)
    return _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}[redacted]", text)


class ContextFilter(logging.Filter):
    """Adds the request and connection ids and masks anything that looks like a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = context.request_id.get()
        record.connection_id = context.connection_id.get()
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class RefusalFilter(logging.Filter):
    """One line per refused request (4xx). Django logs each refusal as a warning that says why
    ("Forbidden (Permission denied): /teams/acme/members/"), with a traceback when a view raised
    PermissionDenied or Http404: a refusal is the app working, so the traceback goes. runserver's
    access line for the same request goes too: the warning has said it, with the request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if not isinstance(status, int) or not 400 <= status < 500:
            return True
        if record.name == "django.server":
            return False
        record.exc_info, record.exc_text = None, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "connection_id": getattr(record, "connection_id", "-"),
        }
        if record.exc_info:
            payload["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, ensure_ascii=False)


PLAIN_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s conn=%(connection_id)s] %(message)s"
)


def logging_config(*, json_lines: bool, level: str) -> dict[str, object]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "bipsync_partner.ops.logs.ContextFilter"},
            "refusals": {"()": "bipsync_partner.ops.logs.RefusalFilter"},
        },
        "formatters": {
            "json": {"()": "bipsync_partner.ops.logs.JsonFormatter"},
            "plain": {"format": PLAIN_FORMAT},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if json_lines else "plain",
                "filters": ["refusals", "context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's own console handler would print every django.* line a second time (they
            # reach the root's handler too); runserver's access lines get ids and redaction (a
            # callback's query holds an authorization code) like every other line.
            "django": {"handlers": [], "level": level, "propagate": True},
            "django.server": {"handlers": ["console"], "level": level, "propagate": False},
            # httpx logs every request line at INFO; URLs can carry codes, so keep it quiet.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            "celery": {"level": level},
        },
    }
