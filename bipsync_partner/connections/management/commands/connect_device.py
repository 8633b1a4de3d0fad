"""``manage.py connect_device --email USER --team TEAM --tenant T``: connect a member to a Bipsync
tenant from the command line with the device authorization grant (RFC 8628), as the partner's
public application (``BIPSYNC_PUBLIC_CLIENT_ID``, no secret).

It prints the user code and where to enter it (and the address with the code filled in), shows a
live countdown while it polls, and ends with the connection stored (kind ``device``; reconnecting
updates the member's existing one) or a sentence saying why not: denied, expired, cancelled
(Ctrl-C), or Bipsync unreachable. Exit status 0 only when a connection was stored.

A reconnect approved as another Bipsync account than the one the member's connection acts as would
change whose research it reads; as on the web, that is never done silently. At a terminal the
command asks; otherwise it needs ``--replace-account``. Declined, nothing is stored and the new
grant is revoked at Bipsync.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.utils import timezone

from accounts.models import Membership, Team, User
from bipsync_partner.connections import clients
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.revocation import revoke_quietly
from bipsync_partner.connections.store import Grant, Owner, store_token, target_connection
from bipsync_partner.oauth import (
    DeviceAuthorization,
    DevicePollAttempt,
    OAuthError,
    validate_slug,
)

REFUSALS = {
    "access_denied": "The request was denied at Bipsync; nothing was stored.",
    "expired_token": (
        "The code expired before it was approved (Bipsync gives {seconds} seconds); run the "
        "command again."
    ),
    "cancelled": "Cancelled; nothing was stored.",
}


class Countdown:
    """One status line rewritten in place with ``\\r``: seconds left and the last poll's answer."""

    def __init__(self, out: OutputWrapper, device: DeviceAuthorization) -> None:
        self.out = out
        self.device = device
        self.last = "waiting"
        self.width = 0

    def show(self) -> None:
        left = max(0, int((self.device.expires_at - timezone.now()).total_seconds()))
        line = f"Waiting for approval: {left:3d} s left ({self.last})"
        self.width = max(self.width, len(line))
        self.out.write("\r" + line.ljust(self.width), ending="")
        self.out.flush()

    def polled(self, attempt: DevicePollAttempt) -> None:
        self.last = attempt.outcome.replace("_", " ")
        self.show()

    def sleep(self, seconds: float) -> None:
        # Sleep in short slices so that the countdown moves every second; Ctrl-C interrupts here.
        end = time.monotonic() + seconds
        while (remaining := end - time.monotonic()) > 0:
            self.show()
            time.sleep(min(1.0, remaining))
        self.show()

    def done(self) -> None:
        self.out.write("")  # ends the status line
        self.out.flush()


class Command(BaseCommand):
    help = (
        "Connect a team member to a Bipsync site with the device grant: prints a code to enter "
        "at Bipsync and waits for the approval."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="The member's email address here.")
        parser.add_argument("--team", required=True, help="The team's slug.")
        parser.add_argument(
            "--tenant", required=True, help="The Bipsync site: acme for acme.bipsync.com."
        )
        parser.add_argument(
            "--replace-account",
            action="store_true",
            help=(
                "Reconnect even when the code is approved as another Bipsync account than the "
                "connection acts as now (asked at a terminal without it)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(email__iexact=options["email"]).first()
        team = Team.objects.filter(slug=options["team"]).first()
        if user is None or team is None:
            raise CommandError("No such user or team here.")
        membership = Membership.objects.filter(user=user, team=team).first()
        if membership is None:
            raise CommandError(f"{user} is not a member of {team.slug}.")
        try:
            tenant = validate_slug(options["tenant"])
        except OAuthError:
            raise CommandError(
                "A Bipsync site is 1-63 lowercase letters, digits or inner hyphens, as in acme."
            ) from None
        try:
            client = clients.client_for(Connection.Kind.DEVICE)
        except clients.ClientNotConfigured as exc:
            raise CommandError(str(exc)) from None

        lifetime = 60  # Bipsync's documented device code lifetime, until the server says
        try:
            with clients.http_client() as http:
                grants = clients.grant_client(clients.tenant(tenant), client, http)
                device = grants.start_device_authorization(clients.requested_scopes())
                # RFC 8628 §3.2: without an "interval" the client uses 5 s (the setting's
                # default); a lower setting is only for servers that accept it (the sandbox).
                interval = int(settings.BIPSYNC_DEVICE_POLL_INTERVAL_SECONDS)
                if device.interval == 5 and interval != 5:
                    device = dataclasses.replace(device, interval=interval)
                lifetime = int((device.expires_at - device.received_at).total_seconds())
                self.stdout.write(f"To connect {user} to Bipsync ({tenant}):")
                self.stdout.write(f"  open   {device.verification_uri}")
                self.stdout.write(f"  enter  {device.user_code}")
                if device.verification_uri_complete:
                    self.stdout.write(f"  or open {device.verification_uri_complete}")
                self.stdout.write("Press Ctrl-C to cancel.")
                countdown = Countdown(self.stdout, device)
                try:
                    token = grants.wait_for_device_token(
                        device, sleep=countdown.sleep, on_poll=countdown.polled
                    )
                finally:
                    countdown.done()
        except KeyboardInterrupt:
            raise CommandError(REFUSALS["cancelled"]) from None
        except OAuthError as exc:
            reason = REFUSALS.get(exc.error)
            if reason is None:
                detail = f": {exc.description}" if exc.description else ""
                reason = f"Bipsync did not connect ({exc.error}{detail}); nothing was stored."
            raise CommandError(reason.format(seconds=lifetime)) from None

        owner = Owner.of(team=team, user=user, tenant=tenant, kind=Connection.Kind.DEVICE)
        grant = Grant.of(token, tenant)
        target = target_connection(owner)
        if grant.acts_as_another_subject_than(target) and not self._replace_confirmed(
            target, grant, options["replace_account"]
        ):
            revoke_quietly(tenant, client, token.refresh_token, token.access_token)
            raise CommandError(
                "Nothing was changed: the code was approved as another Bipsync account than the "
                "connection acts as. Run the command again and approve as that account, or pass "
                "--replace-account to switch accounts."
            )
        result = store_token(
            owner,
            grant,
            actor=user,
            target=target,
            note="Connected from the command line (device grant).",
        )
        conn = result.connection
        verb = "Reconnected" if result.reconnected else "Connected"
        who = conn.subject_name or conn.subject_id or "your Bipsync account"
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb}: {team.slug} / {user} -> {tenant} as {who} (connection {conn.pk})."
            )
        )

    def _replace_confirmed(self, target: Connection | None, grant: Grant, flag: bool) -> bool:
        """Whether the member agrees to switch the connection to the account that approved."""
        if flag:
            return True
        if target is None or not sys.stdin.isatty():
            return False
        before = _identity(target.subject_name, target.subject_id)
        after = _identity(grant.subject_name, grant.subject)
        self.stdout.write(f"The connection acts as {before}; the code was approved as {after}.")
        answer = input("Switch the connection to the new account? [y/N] ")
        return answer.strip().lower() in {"y", "yes"}


def _identity(name: str, subject: str) -> str:
    return f"{name} ({subject})" if name and name != subject else subject
