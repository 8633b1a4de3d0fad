"""Inviting people to a team by email: :func:`invite` makes the link and mails it,
:func:`invitation_for` finds the invitation a link names (or says in a sentence why it cannot be
used), :func:`accept` turns it into a membership exactly once.

The link names the token in its query (``/invitations/?token=…``) rather than its path: access
logs name paths and never queries (``bipsync_partner/gunicorn_conf.py``), as for the OAuth
callback. Only the token's SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import Invitation, Membership, Team, User

#: Longer inputs are not one of our tokens (``token_urlsafe(32)`` is 43 characters).
MAX_TOKEN_LENGTH = 128


class InvitationError(Exception):
    """An invitation that cannot be made or used, with the sentence to show and the status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Sent:
    invitation: Invitation
    link: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def max_age() -> timedelta:
    return timedelta(seconds=settings.TEAM_INVITE_MAX_AGE_SECONDS)


def link_for(token: str) -> str:
    return f"{settings.SITE_URL}{reverse('accounts:invitation')}?{urlencode({'token': token})}"


def invite(team: Team, email: str, role: str, invited_by: User) -> Sent:
    """Invite ``email`` to ``team`` with ``role`` and mail the link. An open invitation for the
    same address is withdrawn first, so that only the newest link works."""
    email = email.strip().lower()
    if Membership.objects.filter(team=team, user__email__iexact=email).exists():
        raise InvitationError(f"{email} is already a member of {team}.")
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        Invitation.objects.open().filter(team=team, email=email).update(revoked_at=now)
        invitation = Invitation.objects.create(
            team=team,
            email=email,
            role=role,
            invited_by=invited_by,
            token_hash=token_hash(token),
            created=now,
            expires_at=now + max_age(),
        )
    link = link_for(token)
    _mail(invitation, link)
    return Sent(invitation=invitation, link=link)


def _mail(invitation: Invitation, link: str) -> None:
    inviter = invitation.invited_by.display_name if invitation.invited_by else "A team admin"
    until = timezone.localtime(invitation.expires_at).strftime("%Y-%m-%d %H:%M %Z")
    send_mail(
        f"Join {invitation.team} on bipsync-partner",
        f"{inviter} invited you to join {invitation.team} as {invitation.get_role_display()}"
        f".\n\nOpen this link to accept (it works once, until {until}):\n{link}\n\n"
        "If you did not expect this, ignore this email.\n",
        None,
        [invitation.email],
    )


def invitation_for(token: str) -> Invitation:
    """The usable invitation ``token`` names, or :class:`InvitationError` with the reason."""
    found = None
    if token and len(token) <= MAX_TOKEN_LENGTH:
        found = (
            Invitation.objects.select_related("team", "invited_by")
            .filter(token_hash=token_hash(token))
            .first()
        )
    if found is None:
        raise InvitationError(
            "This invitation link is not valid. Check that you opened the whole link from the "
            "email, or ask a team admin to invite you again.",
            status=404,
        )
    _refuse_unless_pending(found)
    return found


def _refuse_unless_pending(invitation: Invitation) -> None:
    state = invitation.state(timezone.now())
    if state == Invitation.State.ACCEPTED:
        raise InvitationError(
            "This invitation was already used. Sign in to reach the team, or ask a team admin "
            "for a new invitation.",
            status=410,
        )
    if state == Invitation.State.REVOKED:
        raise InvitationError(
            "This invitation was withdrawn by a team admin. Ask them for a new one.", status=410
        )
    if state == Invitation.State.EXPIRED:
        when = timezone.localtime(invitation.expires_at).strftime("%Y-%m-%d %H:%M %Z")
        raise InvitationError(
            f"This invitation expired on {when}. Ask a team admin for a new one.", status=410
        )


def refuse_unless_invitee(invitation: Invitation, user: User) -> None:
    if user.email.lower() != invitation.email.lower():
        raise InvitationError(
            f"This invitation is for {invitation.email}, and you are signed in as {user.email}. "
            "Sign out, then open the link again.",
            status=403,
        )


def accept(invitation: Invitation, user: User) -> Membership:
    """Use the invitation for ``user`` (whose email it must be); once only, even when the link is
    opened twice at the same moment."""
    refuse_unless_invitee(invitation, user)
    now = timezone.now()
    with transaction.atomic():
        claimed = Invitation.objects.pending(now).filter(pk=invitation.pk)
        if claimed.update(accepted_at=now, accepted_by=user) != 1:
            invitation.refresh_from_db()
            _refuse_unless_pending(invitation)
            raise InvitationError("This invitation can no longer be used.", status=410)
        return invitation.team.join(user, invitation.role)


def sign_up_and_accept(invitation: Invitation, password: str, name: str = "") -> User:
    """Create the invitee's account (with the invitation's address: the email proved it) and
    accept the invitation, in one transaction."""
    with transaction.atomic():
        if User.objects.filter(email__iexact=invitation.email).exists():
            raise InvitationError(
                f"An account for {invitation.email} exists already: sign in with it to accept.",
                status=409,
            )
        user = User.objects.create_user(invitation.email, password, name=name.strip())
        accept(invitation, user)
    return user


def revoke(team: Team, invitation_id: int) -> Invitation:
    invitation = Invitation.objects.open().filter(team=team, pk=invitation_id).first()
    if invitation is None:
        raise InvitationError(
            "That invitation is not open any more (it was used or withdrawn).", status=404
        )
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    return invitation
