from __future__ import annotations

from django.test import Client

from accounts.models import User
from tests.conftest import PASSWORD


def test_it_shows_the_sign_in_page(db: None) -> None:
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    assert b"Sign in" in response.content


def test_it_sends_anonymous_visitors_to_sign_in(db: None) -> None:
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_signs_in_by_email_and_lands_on_the_team(alice: User) -> None:
    client = Client()
    response = client.post(
        "/accounts/login/", {"username": "ALICE@example.com", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(alice.pk)
    response = client.get("/", follow=True)
    assert response.redirect_chain[-1][0] == "/teams/acme/"
    assert b"Acme Research" in response.content


def test_it_rejects_a_wrong_password(alice: User) -> None:
    client = Client()
    response = client.post("/accounts/login/", {"username": alice.email, "password": "nope"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert b"correct email" in response.content


def test_it_signs_out_on_post_only(alice: User) -> None:
    client = Client()
    client.force_login(alice)
    assert client.get("/accounts/logout/").status_code == 405
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_it_changes_the_password(alice: User) -> None:
    client = Client()
    client.force_login(alice)
    response = client.post(
        "/accounts/password/",
        {
            "old_password": PASSWORD,
            "new_password1": "a-new-long-pass-2026",
            "new_password2": "a-new-long-pass-2026",
        },
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("a-new-long-pass-2026")
