from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Membership, Team, User

DEMO_TEAM = "Acme Research"
DEMO_ADMIN = "admin@acme.example"
DEMO_MEMBER = "member@acme.example"


class Command(BaseCommand):
    help = (
        "Create (or refresh) the demo team with an admin and a member. Passwords come from "
        "DEMO_ADMIN_PASSWORD and DEMO_MEMBER_PASSWORD. Safe to run repeatedly."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        passwords = {
            DEMO_ADMIN: os.environ.get("DEMO_ADMIN_PASSWORD") or "",
            DEMO_MEMBER: os.environ.get("DEMO_MEMBER_PASSWORD") or "",
        }
        if not all(passwords.values()):
            self.stderr.write("Set DEMO_ADMIN_PASSWORD and DEMO_MEMBER_PASSWORD first.")
            raise SystemExit(2)
        with transaction.atomic():
            team = Team.objects.filter(slug="acme").first() or Team.objects.create(
                name=DEMO_TEAM, slug="acme"
            )
            for email, role in [(DEMO_ADMIN, "admin"), (DEMO_MEMBER, "member")]:
                user = User.objects.filter(email=email).first() or User(email=email)
                user.name = "Ada Admin" if role == "admin" else "Max Member"
                user.is_staff = user.is_superuser = role == Membership.Role.ADMIN
                user.set_password(passwords[email])
                user.save()
                team.add_member(user, role)
        self.stdout.write(self.style.SUCCESS(f"Demo team {team.name!r} is ready."))
        self.stdout.write(f"  admin:  {DEMO_ADMIN}  password: {passwords[DEMO_ADMIN]}")
        self.stdout.write(f"  member: {DEMO_MEMBER}  password: {passwords[DEMO_MEMBER]}")
