"""Team admins manage members on the Members page: roles, removal (with the member's own Bipsync
connections disconnected after a confirmation page that lists them), and a team never loses its
last admin."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from accounts.models import LastAdminError, Membership, Team, User
from bipsync_partner.connections.models import Connection, ConnectionEvent
from tests.conftest import signed_in

pytestmark = pytest.mark.django_db


def membership(team: Team, user: User) -> Membership:
    return Membership.objects.get(team=team, user=user)


def personal_connection(
    team: Team, user: User, tenant: str = "acme", **fields: object
) -> Connection:
    values: dict[str, object] = {
        "team": team,
        "user": user,
        "created_by": user,
        "tenant": tenant,
        "kind": Connection.Kind.USER,
        "access_token": "at-not-real",
        "refresh_token": "rt-not-real",
        "access_expires_at": timezone.now() + timedelta(hours=1),
    }
    values.update(fields)
    return Connection.objects.create(**values)


def test_the_members_page_lists_members_with_their_roles_and_an_invite_form(
    alice: User, bob: User
) -> None:
    page = signed_in(alice).get("/teams/acme/members/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "bob@example.com" in body
    assert "alice@example.com" in body
    assert "Send invitation" in body
    assert "No invitations waiting." in body


def test_an_admin_makes_a_member_an_admin_and_back(team: Team, alice: User, bob: User) -> None:
    url = f"/teams/acme/members/{membership(team, bob).pk}/role/"
    response = signed_in(alice).post(url, {"role": "admin"}, follow=True)
    assert b"bob@example.com is now Admin." in response.content
    assert membership(team, bob).is_admin
    signed_in(alice).post(url, {"role": "member"})
    assert not membership(team, bob).is_admin


def test_the_last_admin_cannot_be_demoted(team: Team, alice: User, bob: User) -> None:
    url = f"/teams/acme/members/{membership(team, alice).pk}/role/"
    response = signed_in(alice).post(url, {"role": "member"})
    assert response.status_code == 400
    assert b"Acme Research needs at least one admin" in response.content
    assert membership(team, alice).is_admin


def test_an_admin_may_step_down_when_another_admin_remains(
    team: Team, alice: User, bob: User
) -> None:
    team.add_member(bob, Membership.Role.ADMIN)
    url = f"/teams/acme/members/{membership(team, alice).pk}/role/"
    assert signed_in(alice).post(url, {"role": "member"}).status_code == 302
    assert not membership(team, alice).is_admin


def test_an_unknown_role_is_refused_with_a_sentence(team: Team, alice: User, bob: User) -> None:
    url = f"/teams/acme/members/{membership(team, bob).pk}/role/"
    response = signed_in(alice).post(url, {"role": "owner"})
    assert response.status_code == 400
    assert b"Choose Admin or Member." in response.content


def test_removing_a_member_lists_their_own_connections_first_then_disconnects_them(
    team: Team, alice: User, bob: User
) -> None:
    bobs = personal_connection(team, bob, tenant="acme")
    bobs_device = personal_connection(team, bob, tenant="acme", kind=Connection.Kind.DEVICE)
    alices = personal_connection(team, alice, tenant="acme")
    url = f"/teams/acme/members/{membership(team, bob).pk}/remove/"
    client = signed_in(alice)

    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert "Remove Bob Member from Acme Research?" in body
    assert "Disconnects their own user connection to acme" in body
    assert "Disconnects their own user (command line) connection to acme" in body
    assert Membership.objects.filter(team=team, user=bob).exists()  # nothing happened yet

    response = client.post(url, follow=True)
    assert b"bob@example.com was removed from Acme Research." in response.content
    assert not Membership.objects.filter(team=team, user=bob).exists()
    for conn in (bobs, bobs_device):
        conn.refresh_from_db()
        assert conn.status == Connection.Status.DISCONNECTED
        assert not conn.has_access_token
        assert not conn.has_refresh_token
        assert conn.events.filter(kind=ConnectionEvent.Kind.DISCONNECTED, actor=alice).exists()
    alices.refresh_from_db()
    assert alices.status == Connection.Status.ACTIVE
    assert signed_in(bob).get("/teams/acme/").status_code == 404


def test_removing_a_member_without_connections_says_so(team: Team, alice: User, bob: User) -> None:
    page = signed_in(alice).get(f"/teams/acme/members/{membership(team, bob).pk}/remove/")
    assert b"They have no connections of their own in this team." in page.content


def test_the_last_admin_cannot_be_removed(team: Team, alice: User, bob: User) -> None:
    url = f"/teams/acme/members/{membership(team, alice).pk}/remove/"
    page = signed_in(alice).get(url)
    assert page.status_code == 400
    assert b"Acme Research needs at least one admin" in page.content
    response = signed_in(alice).post(url)
    assert response.status_code == 400
    assert b"Acme Research needs at least one admin" in response.content
    assert membership(team, alice).is_admin


def test_an_admin_who_removes_themselves_lands_outside_the_team(
    team: Team, alice: User, bob: User
) -> None:
    team.add_member(bob, Membership.Role.ADMIN)
    response = signed_in(alice).post(f"/teams/acme/members/{membership(team, alice).pk}/remove/")
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert not Membership.objects.filter(team=team, user=alice).exists()


def test_members_and_outsiders_get_403_and_404_on_admin_actions(
    team: Team, alice: User, bob: User, charlie: User
) -> None:
    target = membership(team, alice).pk
    actions = [
        ("get", "/teams/acme/members/", {}),
        ("post", f"/teams/acme/members/{target}/role/", {"role": "member"}),
        ("get", f"/teams/acme/members/{target}/remove/", {}),
        ("post", f"/teams/acme/members/{target}/remove/", {}),
    ]
    for method, url, data in actions:
        assert getattr(signed_in(bob), method)(url, data).status_code == 403, url
        assert getattr(signed_in(charlie), method)(url, data).status_code == 404, url
    assert membership(team, alice).is_admin


def test_an_admin_cannot_reach_another_teams_memberships_through_their_own_team(
    team: Team, alice: User, charlie: User
) -> None:
    charlies = Membership.objects.get(user=charlie)
    client = signed_in(charlie)
    assert (
        client.post(
            f"/teams/globex/members/{membership(team, alice).pk}/role/", {"role": "member"}
        ).status_code
        == 404
    )
    assert (
        client.post(f"/teams/globex/members/{membership(team, alice).pk}/remove/").status_code
        == 404
    )
    assert charlies.is_admin
    assert membership(team, alice).is_admin


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    team: Team, alice: User, bob: User
) -> None:
    team.add_member(bob, Membership.Role.ADMIN)
    targets = [membership(team, alice), membership(team, bob)]
    barrier = threading.Barrier(2)
    refused: list[LastAdminError] = []

    def demote(target: Membership) -> None:
        try:
            barrier.wait()
            team.set_role(target, Membership.Role.MEMBER)
        except LastAdminError as exc:
            refused.append(exc)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=demote, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(refused) == 1
    assert team.admins().count() == 1
