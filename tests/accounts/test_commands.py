from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Membership, Team, User


def test_it_creates_a_team_with_an_admin(db: None) -> None:
    out = StringIO()
    call_command("create_team", name="Initech", admin_email="Boss@Initech.example", stdout=out)
    team = Team.objects.get(slug="initech")
    user = User.objects.get(email="boss@initech.example")
    assert Membership.objects.get(team=team, user=user).is_admin
    password = out.getvalue().split("password: ")[1].strip()
    assert user.check_password(password)


def test_it_refuses_an_invalid_email(db: None) -> None:
    with pytest.raises(CommandError, match="not a valid email"):
        call_command("create_team", name="Initech", admin_email="nope")
    assert not Team.objects.exists()
