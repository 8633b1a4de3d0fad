"""Every page of the partner app, asked badly by everyone, answers without a server error.

A crawl over the URL patterns themselves (so a new page is covered the day it is added): each is
requested by an anonymous visitor, a team admin, a member and an outsider, with the real ids, the
other team's ids and ids that do not exist, by GET with junk query strings and by POST with junk
forms (NUL characters, wrong types, unknown choices, overlong values). The test client raises a
view's exception instead of answering 500, so a failure here shows the traceback. Calls to Bipsync
go to the sandbox over real HTTP.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from pytest_django.fixtures import Settings

from accounts.models import Membership, Team, User
from bipsync_partner.connections.models import Connection
from bipsync_partner.sync.models import SyncRun
from tests.connections.connect_support import configure_partner, new_world
from tests.support.sandbox import Sandbox, SandboxWorld

pytestmark = pytest.mark.django_db

# Django's own admin has its own tests; the crawl covers the pages that are ours.
SKIPPED_PREFIXES = ("admin/",)

JUNK: dict[str, list[str]] = {
    "q": ["\x00", "x" * 5000],
    "page": ["-1", "abc", "99999999999999999999"],
    "content_type": ["\x00zz"],
    "author": ["<script>"],
    "status": ["bogus"],
    "tenant": ["../../etc", "\x00", "A" * 300],
    "kind": ["bogus"],
    "code": ["x"],
    "state": ["\x00"],
    "error": ["access_denied"],
    "next": ["https://evil.example/"],
    "team": ["\x00", "nope"],
    "client_id": ["\x00"],
    "client_secret": ["x" * 5000],
    "interval": ["-5", "abc", "1e309"],
    "schedule": ["bogus"],
    "enabled": ["maybe"],
    "sync_user_connections": ["\x00"],
    "confirm": ["yes"],
    "connection": ["not-a-uuid", str(uuid.UUID(int=0))],
    "offset": ["-1"],
    "since": ["\x00"],
    "label": ["\x00", "x" * 5000],
    "scopes": ["\x00", "team_x rest_api:read"],
    "token": ["\x00", "x" * 5000],
    "email": ["\x00@example.com", "not an email"],
    "role": ["owner"],
    "password": ["\x00"],
    "password1": ["x"],
    "password2": ["\x00"],
    "name": ["x" * 5000],
}
VARIANTS = max(len(values) for values in JUNK.values())


def flat_patterns(
    resolver: URLResolver | None = None, prefix: str = ""
) -> Iterator[tuple[str, URLPattern]]:
    for entry in (resolver or get_resolver()).url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from flat_patterns(entry, route)
        else:
            yield route, entry


@pytest.fixture
def world(sandbox: Sandbox, settings: Settings) -> SandboxWorld:
    created = new_world(sandbox)
    configure_partner(settings, sandbox, created)
    return created


def make_connection(team: Team, admin: User, tenant: str) -> Connection:
    """A team-level (service-account) connection: every member may see it and its syncs."""
    return Connection.objects.create(
        team=team,
        created_by=admin,
        tenant=tenant,
        kind=Connection.Kind.SERVICE_ACCOUNT,
        subject_id=uuid.uuid4().hex[:24],
        subject_name="Someone",
        scopes="rest_api:read",
        access_token="at-" + uuid.uuid4().hex,
        refresh_token="rt-" + uuid.uuid4().hex,
    )


def params_for(
    pattern: URLPattern, mine: Connection, theirs: Connection, run: SyncRun
) -> list[dict[str, Any]]:
    choices: dict[str, list[Any]] = {
        "team_slug": ["acme", "globex", "nope"],
        "connection_id": [mine.pk, theirs.pk, uuid.uuid4()],
        "record_id": [uuid.uuid4()],
        "run_id": [run.pk, 2**31 - 1],
        # The team's only admin: removing or demoting it is refused, so the crawl's posts leave
        # the named people in place for the pages after it.
        "membership_id": [_first_admin_membership("acme"), 2**31 - 1],
        "invitation_id": [2**31 - 1],
        "document_id": [2**31 - 1],
        "attachment_id": ["0" * 24, "not-an-id"],
        "key_id": [2**31 - 1],
        "endpoint_id": [uuid.uuid4()],
        "delivery_id": [2**31 - 1],
        # The HTTP API's ids (answered with a problem: the crawl's session carries no API key).
        "doc_id": ["0", "not-an-id"],
        "user_id": ["0"],
        "category_id": ["0"],
        "contact_id": ["0"],
        "project_id": ["0"],
        "write_id": ["0", "not-an-id"],
        "uid": [uuid.uuid4()],
    }
    names = list(pattern.pattern.converters)
    return [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(choices[name] for name in names))
    ]


def _first_admin_membership(team_slug: str) -> int:
    found = (
        Membership.objects.filter(team__slug=team_slug, role=Membership.Role.ADMIN)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    return found or 2**31 - 2


def fill(route: str, kwargs: dict[str, Any]) -> str:
    path = route
    for name, value in kwargs.items():
        for converter in ("slug", "uuid", "int", "str"):
            path = path.replace(f"<{converter}:{name}>", str(value))
    return "/" + path


def test_no_page_answers_a_server_error_to_anyone(
    world: SandboxWorld, team: Team, other_team: Team, alice: User, bob: User, charlie: User
) -> None:
    mine = make_connection(team, alice, world.tenant)
    theirs = make_connection(other_team, charlie, world.tenant)
    run = SyncRun.objects.create(connection=mine, requested_by=alice)
    visitors: dict[str, User | None] = {
        "anonymous": None,
        "admin": alice,
        "member": bob,
        "outsider": charlie,
    }

    answers: Counter[tuple[str, str, int]] = Counter()
    routes = [(r, p) for r, p in flat_patterns() if not r.startswith(SKIPPED_PREFIXES)]
    # Last, the pages that end something: once disconnected, a connection's pages are 404.
    routes.sort(key=lambda entry: "disconnect" in entry[0] or "logout" in entry[0])
    for route, pattern in routes:
        for index, kwargs in enumerate(params_for(pattern, mine, theirs, run)):
            path = fill(route, kwargs)
            # Every junk value reaches the view that reads one value per name, but only where
            # the ids are the real ones (index 0): elsewhere the view stops at its 404.
            for variant in range(VARIANTS if index == 0 else 1):
                junk = {name: values[variant % len(values)] for name, values in JUNK.items()}
                for who, user in visitors.items():
                    for method in ("GET", "POST"):
                        client = Client()
                        if user is not None:
                            # Signed in afresh each time: the crawl posts to "sign out" too.
                            client.force_login(user)
                        if method == "GET":
                            response = client.get(path, junk)
                        else:
                            response = client.post(path, junk)
                        shown = {name: value[:20] for name, value in junk.items()}
                        assert response.status_code < 500, f"{who} {method} {path} {shown}"
                        answers[(who, route, response.status_code)] += 1

    asked = sum(answers.values())
    assert asked > 500
    # The crawl reached the pages behind the doors, not only the doors: signed-in people got
    # pages and form answers, not only redirects to the sign-in page.
    reached = {(who, route) for (who, route, status) in answers if status == 200}
    for route in (
        "teams/<slug:team_slug>/connections/",
        "teams/<slug:team_slug>/connections/<uuid:connection_id>/",
        "teams/<slug:team_slug>/sync/<uuid:connection_id>/",
        "teams/<slug:team_slug>/sync/runs/<int:run_id>/progress.json",
    ):
        assert ("admin", route) in reached, route
        assert ("member", route) in reached, route
    # The research browser answers junk filters with its page, the sentence and a 400.
    research = "teams/<slug:team_slug>/research/"
    for who in ("admin", "member"):
        assert answers[(who, research, 200)] + answers[(who, research, 400)] > 0, who
    assert ("admin", "teams/<slug:team_slug>/connections/machine/") in reached
    assert answers[
        ("admin", "teams/<slug:team_slug>/connections/<uuid:connection_id>/disconnect/", 302)
    ]
    # The disconnect confirmation page itself, not only its POST.
    assert ("admin", "teams/<slug:team_slug>/connections/<uuid:connection_id>/disconnect/") in (
        reached
    )


def test_no_back_office_page_answers_a_server_error_to_staff(
    world: SandboxWorld, team: Team, alice: User
) -> None:
    staff = User.objects.create_superuser("root@example.com", "correct horse battery staple")
    connection = make_connection(team, alice, world.tenant)
    SyncRun.objects.create(connection=connection, requested_by=alice)
    client = Client()
    client.force_login(staff)

    answers: Counter[int] = Counter()
    for model in admin.site._registry:
        changelist = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for variant in range(VARIANTS):
            junk = {name: values[variant % len(values)] for name, values in JUNK.items()}
            for query in ({"q": junk["q"]}, {"o": junk["page"]}, {"p": junk["page"]}, junk):
                response = client.get(changelist, query)
                assert response.status_code < 500, f"{changelist} {list(query)}"
                answers[response.status_code] += 1
        first = model._default_manager.first()
        if first is not None:
            for suffix in ("change/", "history/", "delete/"):
                response = client.get(f"{changelist}{first.pk}/{suffix}")
                assert response.status_code < 500, f"{changelist}{first.pk}/{suffix}"
                answers[response.status_code] += 1
        response = client.get(f"{changelist}{uuid.uuid4()}/change/")
        assert response.status_code < 500
    assert answers[200] > 20, answers
