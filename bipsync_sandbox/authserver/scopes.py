"""Bipsync's OAuth scopes [doc] (platform reference, "Scopes") and their wording on the consent page."""

from __future__ import annotations

import re

REST_SCOPES: dict[str, str] = {
    "rest_api:read": "Read research, notes and files through the REST API",
    "rest_api:write": "Create, change and delete research, notes and files through the REST API",
    "rest_api:fields:read": "Read the definitions of your fields",
}

GRAPHQL_SCOPES: dict[str, str] = {
    f"{name}:read": f"Read {words} through GraphQL"
    for name, words in [
        ("attachments", "attachments"),
        ("categories", "categories"),
        ("classifications", "classifications"),
        ("comments", "comments"),
        ("contacts", "contacts"),
        ("events", "events"),
        ("external_ids", "external ids"),
        ("fields", "fields"),
        ("groups", "groups"),
        ("note_templates", "note templates"),
        ("pipelines", "pipelines"),
        ("projects", "projects"),
        ("research", "research"),
        ("tasks", "tasks"),
        ("users", "users"),
        ("versions", "versions"),
    ]
}

KNOWN_SCOPES: dict[str, str] = {**REST_SCOPES, **GRAPHQL_SCOPES}

# The team scope of the client credentials grant: team_{24-hex team id} [doc].
TEAM_SCOPE_RE = re.compile(r"^team_(?P<team_id>[0-9a-f]{24})$")


def is_known(scope: str) -> bool:
    return scope in KNOWN_SCOPES or bool(TEAM_SCOPE_RE.match(scope))


def split(scope: str | None) -> list[str]:
    return list(dict.fromkeys((scope or "").split()))


def describe(scope: str | None) -> list[str]:
    """Sentences for the consent page, in a stable order."""
    items = split(scope)
    words = [KNOWN_SCOPES.get(item, item) for item in items if item in KNOWN_SCOPES]
    for item in items:
        match = TEAM_SCOPE_RE.match(item)
        if match:
            words.append(f"Everything in team {match.group('team_id')}, private notes included")
    return words
