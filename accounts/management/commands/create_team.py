from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import transaction

from accounts.models import Membership, Team, User


class Command(BaseCommand):
    help = "Create a team with an admin user (the user is created when the email is new)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="The team's name.")
        parser.add_argument("--admin-email", required=True, help="The admin's email address.")
        parser.add_argument(
            "--password",
            help="Password for a new admin user; a random one is generated and printed if omitted.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        email = options["admin_email"].strip().lower()
        try:
            validate_email(email)
        except Exception:
            raise CommandError(f"{email!r} is not a valid email address.") from None
        with transaction.atomic():
            team = Team.objects.create(name=options["name"].strip())
            user = User.objects.filter(email=email).first()
            password = None
            if user is None:
                password = options["password"] or secrets.token_urlsafe(12)
                user = User.objects.create_user(email, password)
            team.add_member(user, Membership.Role.ADMIN)
        self.stdout.write(self.style.SUCCESS(f"Created team {team.name!r} (/{team.slug}/)."))
        if password and not options["password"]:
            self.stdout.write(f"Admin {email} password: {password}")
        else:
            self.stdout.write(f"Admin: {email}")
