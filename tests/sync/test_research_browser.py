"""The research browser at scale: search and filters, bounded counts, pages past the bound, and
filters that fail with a sentence, no documents and a 400."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection
from bipsync_partner.sync.models import (
    DocumentSighting,
    ResearchDocument,
    SyncedContentType,
    TeamSyncSettings,
)
from tests.conftest import signed_in

pytestmark = pytest.mark.django_db

NOTE, MEETING = "a" * 24, "c" * 24
AUTHOR, OTHER_AUTHOR = "b" * 24, "d" * 24


@pytest.fixture
def machine(team: Team) -> Connection:
    return Connection.objects.create(
        team=team,
        tenant="acme",
        kind=Connection.Kind.CLIENT_CREDENTIALS,
        client_id="customer-export",
        client_secret="not-a-real-secret",
        bipsync_team_id="5f0c9a1b2c3d4e5f60718293",
        scopes="rest_api:read",
    )


@pytest.fixture
def content_types(team: Team, machine: Connection) -> None:
    for bid, name in ((NOTE, "Note"), (MEETING, "Meeting")):
        SyncedContentType.objects.create(
            connection=machine,
            team=team,
            tenant="acme",
            bipsync_id=bid,
            name=name.lower(),
            display_name=name,
            content_hash="x",
        )


def documents(conn: Connection, numbers: range, **fields: Any) -> list[ResearchDocument]:
    """Documents seen by ``conn``, newest first by number (document 1 is the newest)."""
    now = timezone.now()
    rows = []
    for n in numbers:
        values: dict[str, Any] = {
            "team": conn.team,
            "tenant": conn.tenant,
            "bipsync_id": f"{n:024x}",
            "source_connection": conn,
            "title": f"Document {n}",
            "content_type_bid": NOTE,
            "author_bid": AUTHOR,
            "content_hash": "0" * 64,
            "bipsync_modified": now - timedelta(minutes=n),
        }
        values.update(fields)
        rows.append(ResearchDocument(**values))
    made = ResearchDocument.objects.bulk_create(rows)
    DocumentSighting.objects.bulk_create(
        DocumentSighting(document=doc, connection=conn) for doc in made
    )
    return made


def url(team: Team) -> str:
    return reverse("sync:research", kwargs={"team_slug": team.slug})


def titles(response: Any) -> list[str]:
    page = response.context["page"]
    return [doc.title for doc in page.object_list] if page else []


def test_search_and_filters_give_exactly_the_matching_documents(
    team: Team, bob: User, machine: Connection, content_types: None
) -> None:
    documents(machine, range(1, 2), title="Acme Q3 earnings preview")
    documents(machine, range(2, 3), title="Globex site visit", content_type_bid=MEETING)
    documents(machine, range(3, 4), title="ACME management meeting", content_type_bid=MEETING)
    documents(machine, range(4, 5), title="Acme channel checks", author_bid=OTHER_AUTHOR)
    documents(machine, range(5, 6), title="Acme old note", deleted_at=timezone.now())
    documents(machine, range(6, 7), title="100% acme_ish")
    client = signed_in(bob)

    def found(**query: str) -> list[str]:
        response = client.get(url(team), query)
        assert response.status_code == 200
        return titles(response)

    assert found(q="acme") == [
        "Acme Q3 earnings preview",
        "ACME management meeting",
        "Acme channel checks",
        "100% acme_ish",
    ]
    assert found(q="acme", content_type=MEETING) == ["ACME management meeting"]
    assert found(author=OTHER_AUTHOR) == ["Acme channel checks"]
    assert found(q="acme", author=OTHER_AUTHOR, content_type=MEETING) == []
    # LIKE's wildcards in a search are plain characters.
    assert found(q="0% a") == ["100% acme_ish"]
    assert found(q="e_i") == ["100% acme_ish"]
    response = client.get(url(team), {"q": "acme", "content_type": MEETING})
    text = response.content.decode()
    assert "1 document." in text
    # The filter keeps what was chosen, and offers the rest.
    assert f'<option value="{MEETING}" selected>Meeting</option>' in text
    assert f'<option value="{NOTE}">Note</option>' in text
    assert 'value="acme"' in text


INVALID = [
    ({"q": "x" * 20_000}, "Search for at most 200 characters."),
    ({"q": "acme\x00"}, "The search cannot contain a NUL character."),
    ({"q": "ac"}, "Search for at least 3 characters."),
    ({"content_type": "f" * 24}, "That is not a content type of the research you see."),
    ({"author": "9" * 24}, "That is not an author of the research you see."),
    ({"page": "nonsense"}, "The page must be a whole number from 1, or “last”."),
    ({"page": "0"}, "The page must be a whole number from 1, or “last”."),
    ({"page": "-2"}, "The page must be a whole number from 1, or “last”."),
    ({"page": "9" * 40}, "The page must be a whole number from 1, or “last”."),
    ({"page": "4"}, "There is no page 4: the pages go up to 3."),
    ({"after": "not-a-cursor"}, "This page link is not valid; start again from the first page."),
    ({"before": "9" * 30 + "~1"}, "This page link is not valid"),
]


@pytest.mark.parametrize(("query", "sentence"), INVALID)
def test_an_invalid_filter_shows_its_sentence_no_documents_and_a_400(
    team: Team,
    bob: User,
    machine: Connection,
    content_types: None,
    query: dict[str, str],
    sentence: str,
) -> None:
    documents(machine, range(1, 121))  # three pages
    response = signed_in(bob).get(url(team), query)
    assert response.status_code == 400
    text = html.unescape(response.content.decode())
    assert sentence in text
    assert response.context["page"] is None
    assert "Document 1<" not in text  # not the unfiltered list under the error
    assert "<table" not in text
    errors = re.findall(r'<p class="error"[^>]*>(.*?)</p>', text, re.S)
    assert errors
    assert all(len(e) < 200 for e in errors)  # the sentences do not repeat a long value


def test_counts_above_the_bound_say_about_and_count_exactly_below_it(
    team: Team, bob: User, machine: Connection, settings: Settings
) -> None:
    settings.RESEARCH_EXACT_COUNT_LIMIT = 40
    documents(machine, range(1, 1201))
    documents(machine, range(1201, 1231), title="Rare entry")
    with db.cursor() as cursor:  # the estimate is the planner's: give it statistics
        cursor.execute("ANALYZE sync_researchdocument")
        cursor.execute("ANALYZE sync_documentsighting")
    client = signed_in(bob)
    everything = client.get(url(team))
    count = everything.context["page"].count
    assert not count.exact
    assert count.value > 40
    assert re.search(r"about [\d,.]+( million)? documents\.", everything.content.decode())
    assert "1,230 documents" not in everything.content.decode()
    rare = client.get(url(team), {"q": "rare entr"})
    assert rare.context["page"].count.exact
    assert "30 documents." in rare.content.decode()


def test_a_count_that_reaches_the_bound_says_more_than_the_bound(
    team: Team, bob: User, machine: Connection, settings: Settings
) -> None:
    settings.RESEARCH_EXACT_COUNT_LIMIT = 100
    documents(machine, range(1, 151))
    with db.cursor() as cursor:
        cursor.execute("ANALYZE sync_researchdocument")
        cursor.execute("ANALYZE sync_documentsighting")
    response = signed_in(bob).get(url(team))
    page = response.context["page"]
    assert str(page.count) == "more than 100 documents"
    assert "more than 100 documents." in response.content.decode()
    assert page.label == "Page 1 of more than 2"
    assert len(titles(response)) == 50


def test_an_estimate_far_above_what_a_first_page_holds_gives_way_to_the_exact_count(
    team: Team, bob: User, machine: Connection, settings: Settings
) -> None:
    settings.RESEARCH_EXACT_COUNT_LIMIT = 40
    # Half the documents are meetings, the other half by another author: the planner takes the
    # two filters as independent and expects a quarter of the documents to be both; three are.
    documents(machine, range(1, 601), content_type_bid=MEETING)
    documents(machine, range(601, 1201), author_bid=OTHER_AUTHOR)
    documents(machine, range(1201, 1204), content_type_bid=MEETING, author_bid=OTHER_AUTHOR)
    for bid, name in ((NOTE, "Note"), (MEETING, "Meeting")):
        SyncedContentType.objects.create(
            connection=machine, team=team, tenant="acme", bipsync_id=bid, display_name=name
        )
    with db.cursor() as cursor:
        cursor.execute("ANALYZE sync_researchdocument")
        cursor.execute("ANALYZE sync_documentsighting")
    response = signed_in(bob).get(url(team), {"content_type": MEETING, "author": OTHER_AUTHOR})
    assert response.status_code == 200
    page = response.context["page"]
    assert page.count.exact
    assert "3 documents." in response.content.decode()
    assert page.label == "Page 1 of 1"
    assert response.context["links"] == {}


def test_pages_past_the_bound_are_read_from_the_last_row_shown_to_the_very_end(
    team: Team, bob: User, machine: Connection, settings: Settings
) -> None:
    settings.RESEARCH_EXACT_COUNT_LIMIT = 60  # one numbered page of 50, keyset pages after it
    made = documents(machine, range(1, 171))
    # Ties in the modification time and documents without one keep a single, stable order.
    ResearchDocument.objects.filter(pk__in=[d.pk for d in made[100:104]]).update(
        bipsync_modified=made[100].bipsync_modified
    )
    ResearchDocument.objects.filter(pk__in=[d.pk for d in made[160:]]).update(bipsync_modified=None)
    client = signed_in(bob)
    expected = [doc.title for doc in _in_browser_order()]
    assert len(expected) == 170

    seen: list[str] = []
    response = client.get(url(team))
    assert response.context["page"].number == 1
    while True:
        assert response.status_code == 200
        seen += titles(response)
        following = response.context["links"].get("next")
        if following is None:
            break
        response = client.get(url(team) + following)
    assert seen == expected

    last = client.get(url(team), {"page": "last"})
    assert titles(last) == expected[-50:]
    assert last.context["links"].get("next") is None
    back: list[str] = titles(last)
    response = last
    while (newer := response.context["links"].get("previous")) is not None:
        response = client.get(url(team) + newer)
        back = titles(response) + back
    assert back == expected
    assert client.get(url(team), {"page": "2"}).status_code == 400  # past the numbered ones


def _in_browser_order() -> list[ResearchDocument]:
    """Newest first; no modification time first (PostgreSQL's NULLS FIRST when descending)."""
    undated = list(ResearchDocument.objects.filter(bipsync_modified=None).order_by("-pk"))
    dated = list(
        ResearchDocument.objects.exclude(bipsync_modified=None).order_by("-bipsync_modified", "-pk")
    )
    return undated + dated


def test_numbered_pages_within_the_bound_link_to_each_other_with_the_filters(
    team: Team, bob: User, machine: Connection
) -> None:
    documents(machine, range(1, 121))
    client = signed_in(bob)
    first = client.get(url(team), {"q": "Document"})
    assert first.context["page"].label == "Page 1 of 3"
    assert b'href="?q=Document&amp;page=2"' in first.content
    last = client.get(url(team), {"q": "Document", "page": "last"})
    assert last.context["page"].number == 3
    assert titles(last) == [f"Document {n}" for n in range(101, 121)]


def test_the_author_filter_offers_only_authors_of_documents_the_viewer_may_read(
    team: Team, alice: User, bob: User, machine: Connection
) -> None:
    TeamSyncSettings.objects.create(team=team, sync_user_connections=True)
    bobs = Connection.objects.create(team=team, user=bob, tenant="acme", kind=Connection.Kind.USER)
    documents(machine, range(1, 4), author_bid=OTHER_AUTHOR, author_name="Dana")
    documents(machine, range(4, 5), author_bid=OTHER_AUTHOR, author_name="")
    documents(machine, range(5, 6), author_bid="e" * 24, author_name="")
    documents(bobs, range(6, 7), author_bid="7" * 24, author_name="Eve Private")

    def authors(user: User) -> dict[str, str]:
        response = signed_in(user).get(url(team))
        return dict(response.context["form"].fields["author"].choices)

    assert authors(alice) == {"": "Anyone", OTHER_AUTHOR: "Dana", "e" * 24: "e" * 24}
    assert authors(bob) == {
        "": "Anyone",
        "7" * 24: "Eve Private",
        OTHER_AUTHOR: "Dana",
        "e" * 24: "e" * 24,
    }
    asked = signed_in(alice).get(url(team), {"author": "7" * 24})
    assert asked.status_code == 400
    assert "Eve Private" not in asked.content.decode()


def test_title_search_is_answered_from_the_trigram_index(
    team: Team, bob: User, machine: Connection
) -> None:
    documents(machine, range(1, 1001))
    documents(machine, range(1001, 1004), title="Quarterly zeppelin review")
    with db.cursor() as cursor:
        # New entries wait in the GIN index's pending list until a vacuum merges them, and the
        # planner counts reading that list; merge it as autovacuum would have by now.
        cursor.execute("SELECT gin_clean_pending_list('research_title_trgm'::regclass)")
        cursor.execute("ANALYZE sync_researchdocument")
        cursor.execute("ANALYZE sync_documentsighting")
    client: Client = signed_in(bob)
    with CaptureQueriesContext(db) as captured:
        response = client.get(url(team), {"q": "zeppelin"})
    assert titles(response) == ["Quarterly zeppelin review"] * 3
    searches = [
        q["sql"]
        for q in captured.captured_queries
        if "LIKE" in q["sql"] and not q["sql"].startswith("EXPLAIN")
    ]
    assert searches, "the view ran the title search"
    with db.cursor() as cursor:
        # A test table is small enough to read whole, which a planner rightly prefers; at a
        # million rows it does not (bench/README.md). Forbid the whole-table read to see which
        # index the planner would take.
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql in searches:  # the count and the page, exactly as the view ran them
            assert sql.startswith("SELECT")
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "research_title_trgm" in plan, plan


def test_past_twenty_numbered_pages_the_browser_goes_on_by_older_and_last(
    team: Team, bob: User, machine: Connection, settings: Settings
) -> None:
    settings.RESEARCH_EXACT_COUNT_LIMIT = 2000
    documents(machine, range(1, 1101))  # 22 pages, counted exactly
    client = signed_in(bob)
    twentieth = client.get(url(team), {"page": "20"})
    assert twentieth.context["page"].label == "Page 20 of 22"
    assert "after=" in twentieth.context["links"]["next"]
    beyond = client.get(url(team) + twentieth.context["links"]["next"])
    assert titles(beyond) == [f"Document {n}" for n in range(1001, 1051)]
    past = client.get(url(team), {"page": "21"})
    assert past.status_code == 400
    assert "Pages are numbered up to 20" in html.unescape(past.content.decode())
    last = client.get(url(team), {"page": "last"})
    assert titles(last) == [f"Document {n}" for n in range(1051, 1101)]
    assert client.get(url(team), {"page": "23"}).status_code == 400


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"after": "~9999999999999999999"}, 200),  # past a bigint: nothing is older
        ({"before": "-99999999999999999~1"}, 400),  # before the year 1
        ({"after": "1700000000000000~1", "before": "1~1"}, 200),  # "after" wins
    ],
)
def test_a_page_link_out_of_any_range_is_a_sentence_or_a_page_never_a_500(
    team: Team, bob: User, machine: Connection, query: dict[str, str], status: int
) -> None:
    documents(machine, range(1, 3))
    response = signed_in(bob).get(url(team), query)
    assert response.status_code == status
    if status == 400:
        assert "This page link is not valid" in html.unescape(response.content.decode())
