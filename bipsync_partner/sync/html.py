"""Note bodies as the document page shows them: Bipsync's HTML (docs/bipsync.md, "Notes")
sanitised by nh3 (the ammonia sanitiser, https://nh3.readthedocs.io) against an allow-list.

A body is whatever anyone with write access to the customer's Bipsync typed or imported, so it
is untrusted markup shown on the partner's own origin: only the formatting below survives.
Scripts, styles, event handlers, forms, frames, images (a tracking pixel would tell a third
party who reads what) and every attribute not listed go; ``<script>`` and ``<style>`` go with
their content. Links keep http, https and mailto targets and get ``rel="noopener noreferrer"``,
so the opened page can neither reach back into this one nor learn its address.
"""

from __future__ import annotations

import nh3
from django.utils.safestring import SafeString, mark_safe

#: Formatting tags a note keeps.
TAGS = frozenset(
    {
        "a",
        "abbr",
        "b",
        "blockquote",
        "br",
        "code",
        "del",
        "div",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "ins",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "span",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "u",
        "ul",
    }
)
#: The attributes they keep (``rel`` on links is set by nh3 itself, never taken from the body).
ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "ol": {"start"},
}
#: Link targets kept; anything else (javascript:, data:, vbscript:...) loses its href.
URL_SCHEMES = frozenset({"http", "https", "mailto"})
#: Removed with everything inside them, not just their tags.
CLEAN_CONTENT_TAGS = frozenset({"script", "style", "template", "noscript", "iframe", "object"})
LINK_REL = "noopener noreferrer"


def sanitised(body: str) -> SafeString:
    """The body's HTML with only the allow-list left, safe to put in a page as it is."""
    cleaned = nh3.clean(
        body,
        tags=set(TAGS),
        clean_content_tags=set(CLEAN_CONTENT_TAGS),
        attributes={tag: set(names) for tag, names in ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
    )
    # nh3's output is the allow-listed markup and nothing else: that is what marks it safe.
    return mark_safe(cleaned)  # noqa: S308
