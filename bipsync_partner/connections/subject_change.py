"""A reconnect that came back as another Bipsync subject is held, encrypted, until the person who
made it decides (an admin, for the service account): :func:`hold`, then
:func:`confirm_subject_change` (store the held tokens) or :func:`cancel_subject_change` (revoke
them)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from accounts.models import Team, User
from bipsync_partner.connections import clients
from bipsync_partner.connections.connect_errors import ConnectError
from bipsync_partner.connections.crypto import DecryptionError
from bipsync_partner.connections.kinds import spec
from bipsync_partner.connections.models import Connection
from bipsync_partner.connections.pending import PendingAuthorizationRecord, digest, hold_lifetime
from bipsync_partner.connections.revocation import revoke_quietly
from bipsync_partner.connections.store import Connected, Grant, Owner, store_token
from bipsync_partner.oauth import Token


def hold(record: PendingAuthorizationRecord, grant: Grant, target: Connection) -> None:
    """Keep the tokens on the used pending authorization until someone decides."""
    token = grant.token
    record.held_access_token = token.access_token
    record.held_refresh_token = token.refresh_token
    record.held_details = {
        "connection": str(target.pk),
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "received_at": token.received_at.isoformat(),
        "scopes": list(token.scopes),
        "subject": grant.subject,
        "subject_name": grant.subject_name,
        "subject_team": grant.subject_team,
        "subject_team_name": grant.subject_team_name,
        "previous_subject": target.subject_id,
        "previous_subject_name": target.subject_name,
        "previous_team": target.bipsync_team_id,
        "previous_team_name": target.bipsync_team_name,
    }
    record.held_until = timezone.now() + hold_lifetime()
    record.save()


def held_record(
    record_id: UUID, *, session_key: str | None, user: User
) -> PendingAuthorizationRecord:
    """The held reconnect ``record_id`` of this session and user, or :class:`ConnectError`."""
    record = (
        PendingAuthorizationRecord.objects.select_related("team")
        .filter(
            pk=record_id,
            user=user,
            session_hash=digest(session_key or ""),
            held_until__isnull=False,
        )
        .first()
    )
    if record is None or record.hold_expired(timezone.now()):
        raise ConnectError(
            "There is no reconnect waiting for your confirmation (it may have expired after "
            f"{int(hold_lifetime().total_seconds() // 60)} minutes). Start again from the "
            "Connections page.",
            status=404 if record is None else 410,
        )
    membership = user.membership_in(record.team)
    if membership is None or (spec(record.kind).admin_only and not membership.is_admin):
        raise ConnectError(
            "Only team admins can confirm this."
            if membership is not None
            else "You are no longer a member of this team.",
            status=403,
        )
    return record


def _held_token(record: PendingAuthorizationRecord) -> Token:
    details = record.held_details
    access = record.held_access_token
    assert access is not None
    expires = details.get("expires_at")
    return Token(
        access_token=access,
        token_type="Bearer",
        expires_at=datetime.fromisoformat(expires) if expires else None,
        refresh_token=record.held_refresh_token,
        scopes=tuple(details.get("scopes", ())),
        received_at=datetime.fromisoformat(details["received_at"]),
    )


def _take_hold(
    record_id: UUID, session_key: str | None, user: User
) -> tuple[PendingAuthorizationRecord, Token]:
    """Claim the held tokens exactly once (a double-clicked confirm applies them once)."""
    record = held_record(record_id, session_key=session_key, user=user)
    with transaction.atomic():
        locked = PendingAuthorizationRecord.objects.select_for_update().get(pk=record.pk)
        # held_until, not the held token: reading that decrypts it, which may fail (below).
        if locked.held_until is None:
            raise ConnectError("This reconnect was already decided.", status=409)
        try:
            token: Token | None = _held_token(locked)
        except DecryptionError:
            # Its key left TOKEN_ENCRYPTION_KEYS meanwhile: nothing to apply or revoke.
            token = None
        details = dict(locked.held_details)
        locked.save(update_fields=locked.release_hold())
    if token is None:
        raise ConnectError(
            "The new authorization can no longer be read here (it was stored with an encryption "
            "key this app no longer has). Start again from the Connections page.",
            code="unreadable",
        )
    locked.held_details = details
    return locked, token


def confirm_subject_change(record_id: UUID, *, session_key: str | None, user: User) -> Connected:
    record, token = _take_hold(record_id, session_key, user)
    details = record.held_details
    target = Connection.objects.filter(pk=details.get("connection"), team=record.team).first()
    previous = details.get("previous_subject_name") or details.get("previous_subject")
    grant = Grant(
        token=token,
        subject=details.get("subject", ""),
        subject_name=details.get("subject_name", ""),
        subject_team=details.get("subject_team", ""),
        subject_team_name=details.get("subject_team_name", ""),
    )
    return store_token(
        Owner.of(team=record.team, user=user, tenant=record.tenant, kind=record.kind),
        grant,
        actor=user,
        target=target,
        note=f"{user} confirmed the change of Bipsync subject (was {previous}).",
    )


def cancel_subject_change(record_id: UUID, *, session_key: str | None, user: User) -> Team:
    """Drop the held tokens, revoking them at Bipsync so that they do not linger there."""
    record, token = _take_hold(record_id, session_key, user)
    revoke_quietly(
        record.tenant, clients.client_for(record.kind), token.refresh_token, token.access_token
    )
    return record.team
