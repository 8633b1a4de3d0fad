from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import demo
from accounts.models import Membership, Team, User

PASSWORD_VARIABLES = {
    demo.ADMIN_EMAIL: "DEMO_ADMIN_PASSWORD",
    demo.MEMBER_EMAIL: "DEMO_MEMBER_PASSWORD",
    demo.OUTSIDER_EMAIL: "DEMO_OUTSIDER_PASSWORD",
}


class Command(BaseCommand):
    help = (
        "Create (or refresh) the demo team with an admin and a member, and an outsider who is "
        "admin of another team. Passwords come from DEMO_ADMIN_PASSWORD, DEMO_MEMBER_PASSWORD "
        "and DEMO_OUTSIDER_PASSWORD. Safe to run repeatedly."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        passwords = {
            email: os.environ.get(name) or "" for email, name in PASSWORD_VARIABLES.items()
        }
        if not all(passwords.values()):
            self.stderr.write(f"Set {', '.join(PASSWORD_VARIABLES.values())} first.")
            raise SystemExit(2)
        with transaction.atomic():
            team = self._team(demo.TEAM_SLUG, demo.TEAM_NAME)
            outsiders = self._team(demo.OUTSIDER_TEAM_SLUG, demo.OUTSIDER_TEAM_NAME)
            people = [
                (team, demo.ADMIN_EMAIL, "Ada Admin", Membership.Role.ADMIN),
                (team, demo.MEMBER_EMAIL, "Max Member", Membership.Role.MEMBER),
                (outsiders, demo.OUTSIDER_EMAIL, "Otto Outsider", Membership.Role.ADMIN),
            ]
            for home, email, name, role in people:
                user = User.objects.filter(email=email).first() or User(email=email)
                user.name = name
                # Only the demo team's admin runs the back office (/admin/).
                user.is_staff = user.is_superuser = email == demo.ADMIN_EMAIL
                user.set_password(passwords[email])
                user.save()
                home.add_member(user, role)
        self.stdout.write(self.style.SUCCESS(f"Demo team {team.name!r} is ready."))
        self.stdout.write(
            f"  admin:    {demo.ADMIN_EMAIL}  password: {passwords[demo.ADMIN_EMAIL]}"
        )
        self.stdout.write(
            f"  member:   {demo.MEMBER_EMAIL}  password: {passwords[demo.MEMBER_EMAIL]}"
        )
        self.stdout.write(
            f"  outsider: {demo.OUTSIDER_EMAIL}  password: {passwords[demo.OUTSIDER_EMAIL]}"
            f"  (admin of {outsiders.name!r} only)"
        )

    @staticmethod
    def _team(slug: str, name: str) -> Team:
        return Team.objects.filter(slug=slug).first() or Team.objects.create(name=name, slug=slug)
