"""The kinds table: one row per kind, and what the rest of the app reads from it."""

from __future__ import annotations

import pytest
from django.conf import settings

from bipsync_partner.connections import clients
from bipsync_partner.connections.forms import ConnectForm
from bipsync_partner.connections.kinds import KINDS, PERSONAL, TEAM_WIDE, Kind, spec


def test_every_kind_has_exactly_one_row() -> None:
    assert sorted(KINDS) == sorted(Kind.values)
    assert all(row.kind == kind for kind, row in KINDS.items())


def test_a_connection_belongs_to_a_member_or_to_the_team_never_both() -> None:
    assert sorted(PERSONAL + TEAM_WIDE) == sorted(Kind.values)
    assert not set(PERSONAL) & set(TEAM_WIDE)


def test_the_connect_form_offers_the_browser_kinds_and_nothing_else() -> None:
    offered = [value for value, _ in ConnectForm().fields["kind"].choices]  # type: ignore[attr-defined]
    assert offered == [k for k, row in KINDS.items() if row.grant == "authorization_code"]


def test_every_application_the_table_names_is_a_setting() -> None:
    for row in KINDS.values():
        for name in (row.client_id_setting, row.client_secret_setting):
            assert name is None or hasattr(settings, name), name


def test_only_kinds_with_their_own_application_need_credentials_passed_in() -> None:
    with pytest.raises(clients.ClientNotConfigured):
        clients.client_for(Kind.CLIENT_CREDENTIALS)
    machine = clients.client_for(Kind.CLIENT_CREDENTIALS, client_id="abc", client_secret="def")
    assert machine.client_id == "abc"


def test_an_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'carrier_pigeon'"):
        spec("carrier_pigeon")
