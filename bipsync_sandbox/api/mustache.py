"""The Mustache subset a rule's body needs: variables.

Hand-written because neither chevron nor pystache is installed (and the sandbox adds no
dependency for this): ``{{a.b}}`` (HTML-escaped, as Mustache does) and ``{{{a.b}}}`` /
``{{& a.b}}`` (as is). Sections, partials and lambdas are not supported: they render nothing.
No Django here, so that tests import it without the sandbox's settings.
"""

from __future__ import annotations

import html
import re
from typing import Any

_TAG = re.compile(r"\{\{\{\s*([\w.]+)\s*\}\}\}|\{\{\s*(&?)\s*([\w.]+)\s*\}\}")


def _lookup(context: dict[str, Any], dotted: str) -> Any:
    value: Any = context
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return ""
        value = value[part]
    return value


def render(template: str, context: dict[str, Any]) -> str:
    def substitute(match: re.Match[str]) -> str:
        raw_name, ampersand, name = match.groups()
        value = _lookup(context, raw_name or name)
        text = "" if value is None else str(value)
        return text if raw_name or ampersand else html.escape(text, quote=True)

    return _TAG.sub(substitute, template)
