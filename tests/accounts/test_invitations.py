"""Invitations through the real views: the admin invites on the Members page, the link arrives by
email (Django's locmem outbox in tests, the console in development), the invitee accepts once."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.invitations import token_hash
from accounts.models import Invitation, Membership, Team, User
from tests.conftest import PASSWORD, signed_in

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "plum-orchard-lantern-42"


def invite(admin: User, email: str, role: str = "member", team: str = "acme") -> str:
    """Invite on the Members page; return the invitation link from the email."""
    outbox = len(mail.outbox)
    response = signed_in(admin).post(
        f"/teams/{team}/members/invite/", {"email": email, "role": role}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert len(mail.outbox) == outbox + 1
    message = mail.outbox[-1]
    assert message.to == [email.lower()]
    found = re.search(r"https?://\S+/invitations/\?token=\S+", str(message.body))
    assert found, message.body
    return found.group(0)


def path_of(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def token_of(link: str) -> str:
    return link.split("token=", 1)[1]


def test_an_admin_invites_by_email_and_only_the_hash_of_the_token_is_stored(
    alice: User, settings: Settings
) -> None:
    settings.SITE_URL = "https://partner.example.com"
    link = invite(alice, "Dora@Example.com")
    assert link.startswith("https://partner.example.com/invitations/?token=")
    token = token_of(link)
    invitation = Invitation.objects.get()
    assert invitation.email == "dora@example.com"
    assert invitation.token_hash == token_hash(token) != token
    assert token not in str(invitation)
    assert token not in repr(invitation)
    page = signed_in(alice).get("/teams/acme/members/")
    assert b"dora@example.com" in page.content
    assert token.encode() not in page.content


def test_the_invitation_works_for_the_configured_time(alice: User, settings: Settings) -> None:
    settings.TEAM_INVITE_MAX_AGE_SECONDS = 3600
    invite(alice, "dora@example.com")
    invitation = Invitation.objects.get()
    assert invitation.expires_at - invitation.created == timedelta(hours=1)


def test_a_new_person_sets_a_password_through_the_link_and_lands_in_the_team(
    alice: User,
) -> None:
    link = invite(alice, "dora@example.com", role="admin")
    client = Client()
    page = client.get(path_of(link))
    assert page.status_code == 200
    assert b"Choose a password" in page.content
    assert "no-store" in page["Cache-Control"]
    assert page["Referrer-Policy"] == "strict-origin"

    response = client.post(
        "/invitations/",
        {
            "token": token_of(link),
            "name": "Dora",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/teams/acme/"
    dora = User.objects.get(email="dora@example.com")
    assert dora.check_password(NEW_PASSWORD)
    assert dora.name == "Dora"
    assert Membership.objects.get(user=dora).role == Membership.Role.ADMIN
    assert client.get("/teams/acme/").status_code == 200  # signed in
    assert Invitation.objects.get().accepted_by == dora


def test_a_weak_or_mismatched_password_is_refused_with_a_sentence(alice: User) -> None:
    link = invite(alice, "dora@example.com")
    client = Client()
    weak = client.post(
        "/invitations/", {"token": token_of(link), "password1": "123", "password2": "123"}
    )
    assert weak.status_code == 400
    assert b"too short" in weak.content
    mismatched = client.post(
        "/invitations/",
        {"token": token_of(link), "password1": NEW_PASSWORD, "password2": NEW_PASSWORD + "x"},
    )
    assert mismatched.status_code == 400
    assert b"The two passwords are not the same." in mismatched.content
    assert not User.objects.filter(email="dora@example.com").exists()
    assert Invitation.objects.get().accepted_at is None


def test_an_invitation_for_an_existing_account_adds_the_membership_once_that_user_signs_in(
    alice: User, charlie: User
) -> None:
    link = invite(alice, charlie.email)
    client = Client()
    page = client.get(path_of(link))
    assert b"sign in to accept" in page.content
    wrong = client.post("/invitations/", {"token": token_of(link), "password": "nope"})
    assert wrong.status_code == 400
    assert b"That is not the password of charlie@example.com." in wrong.content
    assert charlie.membership_in(Team.objects.get(slug="acme")) is None

    response = client.post("/invitations/", {"token": token_of(link), "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/teams/acme/"
    assert client.session["_auth_user_id"] == str(charlie.pk)
    membership = charlie.membership_in(Team.objects.get(slug="acme"))
    assert membership is not None
    assert membership.role == Membership.Role.MEMBER
    assert charlie.membership_in(Team.objects.get(slug="globex")) is not None  # kept


def test_a_signed_in_invitee_joins_with_one_click(alice: User, charlie: User) -> None:
    link = invite(alice, charlie.email)
    client = signed_in(charlie)
    page = client.get(path_of(link))
    assert b"Join Acme Research" in page.content
    response = client.post("/invitations/", {"token": token_of(link)})
    assert response.status_code == 302
    assert client.get("/teams/acme/").status_code == 200


def test_an_invitation_opened_by_someone_else_signed_in_is_refused(alice: User, bob: User) -> None:
    link = invite(alice, "dora@example.com")
    assert signed_in(bob).get(path_of(link)).status_code == 403
    response = signed_in(bob).post("/invitations/", {"token": token_of(link)})
    assert response.status_code == 403
    assert b"This invitation is for dora@example.com" in response.content
    assert Invitation.objects.get().accepted_at is None


def test_an_invitation_used_twice_is_refused_with_a_sentence(alice: User) -> None:
    link = invite(alice, "dora@example.com")
    data = {"token": token_of(link), "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    assert Client().post("/invitations/", data).status_code == 302
    again = Client().post("/invitations/", data)
    assert again.status_code == 410
    assert b"This invitation was already used." in again.content
    assert Client().get(path_of(link)).status_code == 410


def test_an_expired_invitation_is_refused_with_a_sentence(alice: User) -> None:
    link = invite(alice, "dora@example.com")
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = Client().get(path_of(link))
    assert response.status_code == 410
    assert b"This invitation expired on" in response.content
    data = {"token": token_of(link), "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    assert Client().post("/invitations/", data).status_code == 410
    assert not User.objects.filter(email="dora@example.com").exists()


@pytest.mark.parametrize(
    "token",
    ["", "not-a-token", "x" * 5000, "%00", "\u2603"],
    ids=["missing", "made-up", "huge", "nul", "snowman"],
)
def test_a_tampered_link_is_refused_with_a_sentence(alice: User, token: str) -> None:
    link = invite(alice, "dora@example.com")
    tampered = token or ""
    if token == "not-a-token":
        tampered = token_of(link)[:-1] + ("A" if token_of(link)[-1] != "A" else "B")
    response = Client().get("/invitations/", {"token": tampered})
    assert response.status_code == 404
    assert b"This invitation link is not valid." in response.content
    posted = Client().post(
        "/invitations/", {"token": tampered, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert posted.status_code == 404


def test_an_admin_revokes_a_pending_invitation_and_its_link_stops_working(alice: User) -> None:
    link = invite(alice, "dora@example.com")
    invitation = Invitation.objects.get()
    response = signed_in(alice).post(f"/teams/acme/members/invitations/{invitation.pk}/revoke/")
    assert response.status_code == 302
    refused = Client().get(path_of(link))
    assert refused.status_code == 410
    assert b"withdrawn by a team admin" in refused.content
    again = signed_in(alice).post(f"/teams/acme/members/invitations/{invitation.pk}/revoke/")
    assert again.status_code == 404
    assert b"not open any more" in again.content


def test_inviting_again_withdraws_the_earlier_link(alice: User) -> None:
    first = invite(alice, "dora@example.com")
    second = invite(alice, "dora@example.com")
    assert Client().get(path_of(first)).status_code == 410
    assert Client().get(path_of(second)).status_code == 200


def test_inviting_someone_already_in_the_team_is_refused_with_a_sentence(
    alice: User, bob: User
) -> None:
    response = signed_in(alice).post(
        "/teams/acme/members/invite/", {"email": "BOB@example.com", "role": "member"}
    )
    assert response.status_code == 400
    assert b"bob@example.com is already a member of Acme Research." in response.content
    assert not mail.outbox


def test_a_malformed_invitation_form_is_refused_with_a_sentence(alice: User) -> None:
    response = signed_in(alice).post(
        "/teams/acme/members/invite/", {"email": "not an email", "role": "owner"}
    )
    assert response.status_code == 400
    assert b"Enter a valid email address." in response.content
    assert not Invitation.objects.exists()


def test_members_and_outsiders_cannot_invite_or_revoke(
    alice: User, bob: User, charlie: User
) -> None:
    invite(alice, "dora@example.com")
    invitation = Invitation.objects.get()
    data = {"email": "eve@example.com", "role": "admin"}
    assert signed_in(bob).post("/teams/acme/members/invite/", data).status_code == 403
    assert signed_in(charlie).post("/teams/acme/members/invite/", data).status_code == 404
    revoke = f"/teams/acme/members/invitations/{invitation.pk}/revoke/"
    assert signed_in(bob).post(revoke).status_code == 403
    assert signed_in(charlie).post(revoke).status_code == 404
    # Charlie's own team cannot reach acme's invitation either.
    own = f"/teams/globex/members/invitations/{invitation.pk}/revoke/"
    assert signed_in(charlie).post(own).status_code == 404
    assert Invitation.objects.count() == 1
    assert Invitation.objects.get().revoked_at is None


def test_the_invitation_token_never_reaches_the_logs_or_the_admin(
    alice: User, caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    alice.is_staff = alice.is_superuser = True
    alice.save()
    with caplog.at_level(logging.DEBUG):
        link = invite(alice, "dora@example.com")
        token = token_of(link)
        Client().get(path_of(link))
        Client().get("/invitations/", {"token": token[:-2]})
        Client().post(
            "/invitations/",
            {"token": token, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        )
        Client().get(path_of(link))  # refused: used
    assert caplog.records, "the flow logs something (refusals at least)"
    assert all(token not in record.getMessage() for record in caplog.records)
    invitation = Invitation.objects.get()
    admin = signed_in(alice)
    for url in (
        "/admin/accounts/invitation/",
        f"/admin/accounts/invitation/{invitation.pk}/change/",
    ):
        page = admin.get(url)
        assert page.status_code == 200
        assert token.encode() not in page.content
        assert invitation.token_hash.encode() not in page.content
