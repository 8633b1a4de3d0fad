"""``python -m bipsync_sandbox seed_demo``: the demo customer and the partner's applications.

Besides the admin and the member who sign in, the team gets a few named analysts (authors of the
research generated next), and the tenant a directory GraphQL reads: companies with tickers under
classifications (the catalogue), contacts and projects.

Idempotent. Names, passwords, client ids, secrets and redirect URIs come from options, else from the
same environment variables the partner app reads (so both sides of the demo match), else defaults;
passwords and secrets that are neither given nor already set are generated and printed once.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from bipsync_sandbox import hosts
from bipsync_sandbox.api import catalogue, directory
from bipsync_sandbox.api.models import Contact, Project
from bipsync_sandbox.authserver.models import DEVICE_CODE, Application
from bipsync_sandbox.control.admin_api import BadInput, create_or_update_application
from bipsync_sandbox.identity.models import Membership, Team, Tenant, User

REST_SCOPES = ["rest_api:read", "rest_api:write", "rest_api:fields:read"]
#: The GraphQL read scopes of the types the sandbox serves (the apps may be granted them).
GRAPHQL_SCOPES = [
    "research:read",
    "users:read",
    "categories:read",
    "classifications:read",
    "contacts:read",
    "projects:read",
    "attachments:read",
    "external_ids:read",
]
DEMO_SCOPES = REST_SCOPES + GRAPHQL_SCOPES
ANALYSTS = [
    ("Priya Raman", "priya.raman"),
    ("Tomás Alvarez", "tomas.alvarez"),
    ("Hannah Becker", "hannah.becker"),
    ("Kenji Mori", "kenji.mori"),
]
DEMO_CONTACTS = 40
DEMO_PROJECTS = 12


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


class Command(BaseCommand):
    help = "Create (or refresh) the demo tenant, team, users and the partner's OAuth applications."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", default=_env("SANDBOX_DEMO_TENANT", "acme"))
        parser.add_argument("--team-name", default=_env("SANDBOX_DEMO_TEAM_NAME", "Acme Research"))
        parser.add_argument(
            "--team-id", default=_env("SANDBOX_DEMO_TEAM_ID", "5e1ec7ed0000000000000001")
        )
        parser.add_argument("--admin-email", default=_env("DEMO_ADMIN_EMAIL", "admin@acme.example"))
        parser.add_argument("--admin-password", default=_env("DEMO_ADMIN_PASSWORD"))
        parser.add_argument(
            "--member-email", default=_env("DEMO_MEMBER_EMAIL", "member@acme.example")
        )
        parser.add_argument("--member-password", default=_env("DEMO_MEMBER_PASSWORD"))
        parser.add_argument(
            "--redirect-uri",
            action="append",
            default=None,
            help="Registered redirect URI of the partner's web apps (repeatable). "
            "Default: PARTNER_REDIRECT_URI (comma-separated allowed).",
        )
        parser.add_argument(
            "--user-client-id", default=_env("BIPSYNC_USER_CLIENT_ID", "partner-demo-user-app")
        )
        parser.add_argument("--user-client-secret", default=_env("BIPSYNC_USER_CLIENT_SECRET"))
        parser.add_argument(
            "--service-client-id",
            default=_env("BIPSYNC_SERVICE_CLIENT_ID", "partner-demo-service-app"),
        )
        parser.add_argument(
            "--service-client-secret", default=_env("BIPSYNC_SERVICE_CLIENT_SECRET")
        )
        parser.add_argument(
            "--public-client-id", default=_env("BIPSYNC_PUBLIC_CLIENT_ID", "partner-demo-cli-app")
        )
        parser.add_argument(
            "--team-client-id", default=_env("SANDBOX_DEMO_TEAM_CLIENT_ID", "acme-nightly-export")
        )
        parser.add_argument("--team-client-secret", default=_env("SANDBOX_DEMO_TEAM_CLIENT_SECRET"))

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["tenant"]
        if not hosts.is_valid_slug(slug):
            raise CommandError("--tenant must be a valid tenant slug.")
        redirect_uris: list[str] = options["redirect_uri"] or [
            uri.strip()
            for uri in _env(
                "PARTNER_REDIRECT_URI", "http://127.0.0.1:8000/connections/callback/"
            ).split(",")
            if uri.strip()
        ]
        with transaction.atomic():
            tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": slug.title()})
            team, _ = Team.objects.get_or_create(
                pk=options["team_id"], defaults={"tenant": tenant, "name": options["team_name"]}
            )
            if team.tenant_id != tenant.pk:
                raise CommandError("--team-id belongs to another tenant.")
            admin_password = self._user(
                tenant, team, options["admin_email"], options["admin_password"], "Ada Admin", True
            )
            member_password = self._user(
                tenant,
                team,
                options["member_email"],
                options["member_password"],
                "Max Member",
                False,
            )
            domain = options["admin_email"].rpartition("@")[2] or "acme.example"
            for name, local in ANALYSTS:
                # Authors only: they never sign in, so their passwords are never shown.
                self._user(tenant, team, f"{local}@{domain}", "", name, False)
            self._directory(tenant)
            try:
                apps = [
                    self._app(
                        {
                            "client_id": options["user_client_id"],
                            "client_secret": options["user_client_secret"] or None,
                            "name": "Partner Research Sync",
                            "redirect_uris": redirect_uris,
                            "grant_types": ["authorization_code", "refresh_token"],
                            "scopes": DEMO_SCOPES,
                            "tenants": [slug],
                        }
                    ),
                    self._app(
                        {
                            "client_id": options["service_client_id"],
                            "client_secret": options["service_client_secret"] or None,
                            "name": "Partner Research Sync for teams",
                            "redirect_uris": redirect_uris,
                            "grant_types": ["authorization_code", "refresh_token"],
                            "scopes": DEMO_SCOPES,
                            "service_account": True,
                            "tenants": [slug],
                        }
                    ),
                    self._app(
                        {
                            "client_id": options["public_client_id"],
                            "name": "Partner CLI",
                            "confidential": False,
                            "grant_types": [DEVICE_CODE, "refresh_token"],
                            "scopes": DEMO_SCOPES,
                            "tenants": [slug],
                        }
                    ),
                    self._app(
                        {
                            "client_id": options["team_client_id"],
                            "client_secret": options["team_client_secret"] or None,
                            "name": "Acme nightly export (client credentials)",
                            "grant_types": ["client_credentials"],
                            "scopes": ["rest_api:read", "rest_api:write", *GRAPHQL_SCOPES],
                            "team_id": team.pk,
                        }
                    ),
                ]
            except BadInput as exc:
                raise CommandError(str(exc)) from None

        out = self.stdout.write
        out(f"Bipsync sandbox demo tenant '{tenant.slug}'")
        out(f"  API base (issuer): {tenant.api_base}")
        out(f"  web base:          {tenant.web_base}")
        out(f"  team:              {team.name} ({team.pk}); team scope team_{team.pk}")
        out(f"  admin:  {options['admin_email']}  password: {admin_password}")
        out(f"  member: {options['member_email']}  password: {member_password}")
        for app, secret in apps:
            kind = (
                "service account"
                if app.service_account
                else ("confidential" if app.confidential else "public")
            )
            out(f"  app {app.name!r} [{kind}]")
            out(f"    client_id:     {app.client_id}")
            if app.confidential:
                out(f"    client_secret: {secret or '(unchanged; pass one to reset it)'}")
            if app.redirect_uris:
                out(f"    redirect_uris: {' '.join(app.redirect_uris)}")
            out(f"    grants:        {' '.join(app.grant_types)}")

    def _user(
        self, tenant: Tenant, team: Team, email: str, password: str, name: str, admin: bool
    ) -> str:
        email = email.strip().lower()
        user = User.objects.filter(tenant=tenant, email=email).first()
        shown = password or "(unchanged)"
        if user is None:
            user = User(tenant=tenant, email=email, name=name)
            password = password or secrets.token_urlsafe(9)
            shown = password
        if password:
            user.set_password(password)
        user.is_active = True
        user.save()
        Membership.objects.update_or_create(user=user, team=team, defaults={"is_admin": admin})
        return shown

    def _directory(self, tenant: Tenant) -> None:
        catalogue.ensure(tenant)
        if not Contact.objects.filter(tenant=tenant).exists():
            directory.generate(tenant.slug, "contacts", DEMO_CONTACTS, seed=1)
        if not Project.objects.filter(tenant=tenant).exists():
            directory.generate(tenant.slug, "projects", DEMO_PROJECTS, seed=1)

    def _app(self, data: dict[str, Any]) -> tuple[Application, str | None]:
        return create_or_update_application({k: v for k, v in data.items() if v is not None})
