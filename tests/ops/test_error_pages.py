"""The partner app's 404, 403 and 500 pages are its own templates, in the app's layout."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import User
from tests.conftest import signed_in

STYLESHEET = "/static/css/app.css"


def template_names(response: object) -> list[str]:
    return [t.name for t in getattr(response, "templates", []) if t.name]


def test_an_unknown_address_gets_the_styled_not_found_page(alice: User) -> None:
    response = signed_in(alice).get("/no-such-page/")

    assert response.status_code == 404
    assert "404.html" in template_names(response)
    page = response.content.decode()
    assert STYLESHEET in page
    assert "<h1>Not found</h1>" in page


def test_a_member_on_an_admin_page_gets_the_styled_forbidden_page_with_the_reason(
    bob: User,
) -> None:
    response = signed_in(bob).get("/teams/acme/members/")

    assert response.status_code == 403
    assert "403.html" in template_names(response)
    page = response.content.decode()
    assert STYLESHEET in page
    assert "Only team admins can do this." in page


def test_a_form_without_its_csrf_token_gets_the_styled_forbidden_page(db: None) -> None:
    response = Client(enforce_csrf_checks=True).post(
        "/accounts/login/", {"username": "a@example.com", "password": "x"}
    )

    assert response.status_code == 403
    page = response.content.decode()
    assert STYLESHEET in page
    assert "This form has expired" in page


@pytest.mark.urls("tests.ops.failing_urls")
def test_a_failing_view_gets_the_styled_server_error_page(db: None) -> None:
    response = Client(raise_request_exception=False).get("/broken/")

    assert response.status_code == 500
    assert "500.html" in template_names(response)
    page = response.content.decode()
    assert STYLESHEET in page
    assert "<h1>Something went wrong</h1>" in page
    assert "a bug in a view" not in page
