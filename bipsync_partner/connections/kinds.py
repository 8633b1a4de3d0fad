"""The kinds of connection, in one table: what each one is and how it behaves.

Adding a kind (a grant type) starts here: its row says which of the partner's applications it
uses, who may connect it, whom it belongs to, how its tokens are renewed and whether it syncs
without the team asking. Code asks the row (``connection.kind_spec``), never compares names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from django.db import models

Grant = Literal["authorization_code", "device", "client_credentials"]


class Kind(models.TextChoices):
    USER = "user", "User"
    SERVICE_ACCOUNT = "service_account", "Service account"
    DEVICE = "device", "User (command line)"
    CLIENT_CREDENTIALS = "client_credentials", "Machine (client credentials)"


@dataclass(frozen=True)
class KindSpec:
    kind: Kind
    #: The grant that connects it and, for kinds without a refresh token, renews it.
    grant: Grant
    #: The settings naming the partner's application for this kind; no id setting: the
    #: connection carries the customer's own application (machine connections), no secret
    #: setting: a public client.
    client_id_setting: str | None
    client_secret_setting: str | None
    #: What the application is for, in the sentence shown when it is not configured.
    purpose: str
    #: Only team admins may connect it, reconnect it or confirm a change of its subject.
    admin_only: bool
    #: Owned by one member, whose authorization it is; else the team's.
    personal: bool
    #: Renewed with a refresh token; else by asking again with the grant.
    has_refresh_token: bool
    #: Synced without the team turning on "sync user connections".
    syncs_by_default: bool
    #: How the Connect form offers it; empty when the browser flow does not.
    connect_label: str = ""

    @property
    def own_application(self) -> bool:
        """The connection carries the customer's own client id and secret."""
        return self.client_id_setting is None


KINDS: Final[dict[str, KindSpec]] = {
    spec.kind: spec
    for spec in (
        KindSpec(
            kind=Kind.USER,
            grant="authorization_code",
            client_id_setting="BIPSYNC_USER_CLIENT_ID",
            client_secret_setting="BIPSYNC_USER_CLIENT_SECRET",
            purpose="user connections",
            admin_only=False,
            personal=True,
            has_refresh_token=True,
            syncs_by_default=False,
            connect_label="My own Bipsync account",
        ),
        KindSpec(
            kind=Kind.SERVICE_ACCOUNT,
            grant="authorization_code",
            client_id_setting="BIPSYNC_SERVICE_CLIENT_ID",
            client_secret_setting="BIPSYNC_SERVICE_CLIENT_SECRET",
            purpose="service-account connections",
            admin_only=True,
            personal=False,
            has_refresh_token=True,
            syncs_by_default=True,
            connect_label="The team's service account",
        ),
        KindSpec(
            kind=Kind.DEVICE,
            grant="device",
            client_id_setting="BIPSYNC_PUBLIC_CLIENT_ID",
            client_secret_setting=None,
            purpose="the command-line device login",
            admin_only=False,
            personal=True,
            has_refresh_token=True,
            syncs_by_default=False,
        ),
        KindSpec(
            kind=Kind.CLIENT_CREDENTIALS,
            grant="client_credentials",
            client_id_setting=None,
            client_secret_setting=None,
            purpose="machine connections",
            admin_only=True,
            personal=False,
            has_refresh_token=False,
            syncs_by_default=True,
        ),
    )
}


def spec(kind: str) -> KindSpec:
    """The row of ``kind`` (``ValueError`` for a kind that does not exist)."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown connection kind {kind!r}") from None


#: Kinds owned by one member (the tokens act as that person), and those owned by the team.
PERSONAL: Final = tuple(str(s.kind) for s in KINDS.values() if s.personal)
TEAM_WIDE: Final = tuple(str(s.kind) for s in KINDS.values() if not s.personal)
#: Kinds that sync without the team turning on user connections.
SYNCED_BY_DEFAULT: Final = tuple(str(s.kind) for s in KINDS.values() if s.syncs_by_default)
#: What the Connect form offers.
CONNECT_CHOICES: Final = [(str(s.kind), s.connect_label) for s in KINDS.values() if s.connect_label]
