"""What the synced resources bring to the research pages: authors by name, companies with
tickers, the company filter, the sanitised note body and the attachments list.

The rows are made here as a sync stores them (tests/sync/test_resources.py syncs them from the
sandbox); what is tested is what the pages make of them."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.urls import reverse

from accounts.models import Team, User
from bipsync_partner.connections.models import Connection
from bipsync_partner.sync.models import (
    NoteBody,
    ResearchDocument,
    SyncedAttachment,
    SyncedCategory,
    SyncedUser,
)
from tests.conftest import signed_in
from tests.sync.test_research_browser import AUTHOR, OTHER_AUTHOR, documents, titles, url

pytestmark = pytest.mark.django_db

ACME, GLOBEX, INITECH = "a1" * 12, "b2" * 12, "c3" * 12


@pytest.fixture
def machine(team: Team) -> Connection:
    return Connection.objects.create(
        team=team,
        tenant="acme",
        kind=Connection.Kind.CLIENT_CREDENTIALS,
        client_id="customer-export",
        client_secret="not-a-real-secret",
        bipsync_team_id="5f0c9a1b2c3d4e5f60718293",
        scopes="rest_api:read research:read categories:read users:read",
    )


def resource_row(model: type[Any], team: Team, bid: str, **values: Any) -> Any:
    return model.objects.create(
        team=team, tenant="acme", bipsync_id=bid, content_hash="x", **values
    )


@pytest.fixture
def categories(team: Team) -> None:
    resource_row(SyncedCategory, team, ACME, name="Acme Corp", ticker="ACME")
    resource_row(SyncedCategory, team, GLOBEX, name="Globex", ticker="GBX")
    resource_row(SyncedCategory, team, INITECH, name="Initech", ticker="INTC")


def test_authors_are_named_by_the_users_resource_and_shown_by_id_without_it(
    team: Team, bob: User, machine: Connection
) -> None:
    documents(machine, range(1, 2), title="Named", author_bid=AUTHOR)
    documents(machine, range(2, 3), title="Unnamed", author_bid=OTHER_AUTHOR)
    resource_row(SyncedUser, team, AUTHOR, name="Dana Analyst", email="dana@acme.example")

    response = signed_in(bob).get(url(team))

    labels = {doc.title: doc.author_label for doc in response.context["page"].object_list}
    assert labels == {"Named": "Dana Analyst", "Unnamed": OTHER_AUTHOR}
    assert '<option value="' + AUTHOR + '">Dana Analyst</option>' in response.content.decode()


def test_lookup_fields_show_company_names_with_tickers(
    team: Team, bob: User, machine: Connection, categories: None
) -> None:
    (doc,) = documents(
        machine,
        range(1, 2),
        title="Sector note",
        lookup_fields={"entities": [ACME, GLOBEX, "f" * 24], "primary": ACME, "rating": "buy"},
    )
    client = signed_in(bob)

    listed = client.get(url(team))
    page = client.get(reverse("sync:document", args=[team.slug, doc.pk]))

    assert listed.context["page"].object_list[0].companies == ["Acme Corp (ACME)", "Globex (GBX)"]
    assert "Acme Corp (ACME); Globex (GBX)" in listed.content.decode()
    fields = dict(page.context["fields"])
    assert fields == {
        "entities": f"Acme Corp (ACME), Globex (GBX), {'f' * 24}",
        "primary": "Acme Corp (ACME)",
        "rating": "buy",
    }


def test_the_company_filter_takes_a_ticker_or_a_name_in_any_case(
    team: Team, bob: User, machine: Connection, categories: None
) -> None:
    documents(machine, range(1, 2), title="Acme listed", lookup_fields={"entities": [ACME]})
    documents(machine, range(2, 3), title="Acme single", lookup_fields={"primary": ACME})
    documents(machine, range(3, 4), title="Globex only", lookup_fields={"entities": [GLOBEX]})
    documents(machine, range(4, 5), title="Untagged", lookup_fields={})
    client = signed_in(bob)

    def found(company: str) -> list[str]:
        response = client.get(url(team), {"company": company})
        assert response.status_code == 200
        return titles(response)

    assert found("ACME") == ["Acme listed", "Acme single"]
    assert found("acme corp") == ["Acme listed", "Acme single"]
    assert found("gbx") == ["Globex only"]
    assert found("Initech") == []


@pytest.mark.parametrize(
    ("company", "sentence"),
    [
        ("Nobody Inc", "No company of the synced research has that name or ticker."),
        ("x" * 5000, "A company name or ticker has at most 200 characters."),
        ("ACME\x00", "A company name cannot contain a NUL character."),
        ('") || true || ("', "No company of the synced research has that name or ticker."),
    ],
)
def test_a_company_filter_that_names_nothing_known_is_a_400_with_a_sentence(
    team: Team, bob: User, machine: Connection, categories: None, company: str, sentence: str
) -> None:
    documents(machine, range(1, 2), title="Acme listed", lookup_fields={"entities": [ACME]})

    response = signed_in(bob).get(url(team), {"company": company})

    assert response.status_code == 400
    assert html.escape(sentence) in response.content.decode()
    assert response.context["page"] is None


def test_another_teams_categories_are_not_companies_of_this_team(
    team: Team, other_team: Team, bob: User, machine: Connection
) -> None:
    documents(machine, range(1, 2), title="Tagged", lookup_fields={"entities": [ACME]})
    resource_row(SyncedCategory, other_team, ACME, name="Acme Corp", ticker="ACME")

    response = signed_in(bob).get(url(team), {"company": "ACME"})

    assert response.status_code == 400
    assert "Acme Corp" not in response.content.decode()


HOSTILE = (
    '<p onclick="steal()">Quarterly <b>view</b></p><script>document.title="owned"</script>'
    '<a href="javascript:alert(1)">bad link</a><a href="https://example.com/report">report</a>'
    '<img src="https://tracker.example/pixel.gif" onerror="steal()"><style>body{display:none}</style>'
    '<iframe src="https://evil.example"></iframe><table><tr><td colspan="2">cell</td></tr></table>'
)


def test_the_note_body_is_shown_sanitised_and_no_script_reaches_the_page(
    team: Team, bob: User, machine: Connection
) -> None:
    (doc,) = documents(machine, range(1, 2), title="Body")
    resource_row(NoteBody, team, doc.bipsync_id, content=HOSTILE)

    response = signed_in(bob).get(reverse("sync:document", args=[team.slug, doc.pk]))

    text = response.content.decode()
    body = text[text.index('<article class="card note-body">') :]
    body = body[: body.index("</article>")]
    assert "<b>view</b>" in body
    assert '<td colspan="2">cell</td>' in body
    assert '<a href="https://example.com/report" rel="noopener noreferrer">report</a>' in body
    for gone in (
        "<script",
        "owned",
        "onclick",
        "javascript:",
        "<img",
        "<style",
        "<iframe",
        "steal",
    ):
        assert gone not in body, gone


def test_a_document_without_a_body_shows_no_note_section(
    team: Team, bob: User, machine: Connection
) -> None:
    (doc,) = documents(machine, range(1, 2), title="File")

    response = signed_in(bob).get(reverse("sync:document", args=[team.slug, doc.pk]))

    assert response.context["body"] is None
    assert "note-body" not in response.content.decode()


def attachment_of(doc: ResearchDocument, bid: str, **values: Any) -> SyncedAttachment:
    return SyncedAttachment.objects.create(
        team=doc.team,
        tenant=doc.tenant,
        bipsync_id=bid,
        document_bid=doc.bipsync_id,
        content_hash="x",
        **values,
    )


def test_the_document_page_lists_its_live_attachments_with_download_links(
    team: Team, bob: User, machine: Connection
) -> None:
    (doc,) = documents(machine, range(1, 2), title="With files")
    (other,) = documents(machine, range(2, 3), title="Another")
    attachment_of(doc, "e1" * 12, file_name="model.xlsx", length=2048)
    attachment_of(doc, "e2" * 12, file_name="gone.pdf", length=1, deleted_at=doc.first_synced_at)
    attachment_of(other, "e3" * 12, file_name="elsewhere.pdf", length=1)

    response = signed_in(bob).get(reverse("sync:document", args=[team.slug, doc.pk]))

    text = response.content.decode()
    assert [a.file_name for a in response.context["attachments"]] == ["model.xlsx"]
    link = reverse("sync:attachment", args=[team.slug, doc.pk, "e1" * 12])
    assert f'href="{link}"' in text
    assert "2.0\xa0KB" in text
    assert "gone.pdf" not in text
    assert "elsewhere.pdf" not in text


def test_only_someone_who_can_see_the_document_may_download_its_attachment(
    team: Team, alice: User, bob: User, charlie: User
) -> None:
    alices = Connection.objects.create(
        team=team, user=alice, tenant="acme", kind=Connection.Kind.USER
    )
    (doc,) = documents(alices, range(1, 2), title="Alice's own research")
    attachment_of(doc, "e1" * 12, file_name="private.pdf", length=10)
    link = reverse("sync:attachment", args=[team.slug, doc.pk, "e1" * 12])

    assert signed_in(bob).get(link).status_code == 404
    assert signed_in(charlie).get(link).status_code == 404
    wrong = reverse("sync:attachment", args=[team.slug, doc.pk, "e9" * 12])
    assert signed_in(alice).get(wrong).status_code == 404
