from __future__ import annotations

from accounts.models import Membership, Team, User
from tests.conftest import signed_in


def test_it_shows_a_member_their_team(bob: User) -> None:
    response = signed_in(bob).get("/teams/acme/")
    assert response.status_code == 200
    assert b"a member" in response.content


def test_it_hides_another_teams_pages_from_an_outsider(alice: User, charlie: User) -> None:
    client = signed_in(charlie)
    assert client.get("/teams/acme/").status_code == 404
    assert client.get("/teams/acme/members/").status_code == 404


def test_it_answers_404_for_a_team_that_does_not_exist(alice: User) -> None:
    assert signed_in(alice).get("/teams/nope/").status_code == 404


def test_it_refuses_admin_pages_to_a_member(bob: User) -> None:
    assert signed_in(bob).get("/teams/acme/members/").status_code == 403


def test_it_shows_admin_pages_to_an_admin(alice: User, bob: User) -> None:
    response = signed_in(alice).get("/teams/acme/members/")
    assert response.status_code == 200
    assert b"bob@example.com" in response.content


def test_it_switches_between_the_users_teams(alice: User, other_team: Team) -> None:
    other_team.add_member(alice, Membership.Role.MEMBER)
    client = signed_in(alice)
    page = client.get("/teams/acme/")
    assert b'name="team"' in page.content  # the switcher shows when there are two teams
    response = client.post("/accounts/switch-team/", {"team": "globex"})
    assert response.status_code == 302
    assert response["Location"] == "/teams/globex/"
    client.get("/teams/globex/")
    assert client.session["current_team_id"] == other_team.pk
    assert client.get("/").headers["Location"] == "/teams/globex/"


def test_it_refuses_to_switch_to_a_team_the_user_is_not_in(alice: User, charlie: User) -> None:
    response = signed_in(alice).post("/accounts/switch-team/", {"team": "globex"})
    assert response.status_code == 404


def test_it_rejects_a_malformed_switch(alice: User) -> None:
    response = signed_in(alice).post("/accounts/switch-team/", {"team": "not a slug!"})
    assert response.status_code == 400
