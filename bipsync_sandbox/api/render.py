"""JSON rendering of API answers (one place, so that the encoder can be swapped for speed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.http import HttpResponse


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix ([choice]: Bipsync documents no format)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def json_text(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def json_response(body: Any, *, status: int = 200) -> HttpResponse:
    return HttpResponse(json_text(body), status=status, content_type="application/json")
