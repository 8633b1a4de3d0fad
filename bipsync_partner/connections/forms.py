"""Forms of the connect pages. Tenants are validated slugs, never URLs (SSRF; Bipsync reference,
"Tenants and hosts")."""

from __future__ import annotations

from typing import Any

from django import forms

from bipsync_partner.connections.kinds import CONNECT_CHOICES, Kind
from bipsync_partner.connections.models import bipsync_id_validator, tenant_validator
from bipsync_partner.oauth import ConfigurationError, normalize_scopes

TENANT_HELP = "The first part of your Bipsync address: acme for acme.bipsync.com."


class TenantField(forms.CharField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 63)
        kwargs.setdefault("help_text", TENANT_HELP)
        kwargs.setdefault("label", "Bipsync site")
        super().__init__(validators=[tenant_validator], **kwargs)

    def to_python(self, value: Any) -> str:
        # People paste "Acme " or "acme.bipsync.com"; take the slug part, lower-cased, and let
        # the validator refuse anything that is still not a plain slug.
        text = str(super().to_python(value)).strip().lower().rstrip("/")
        text = text.removeprefix("https://").removeprefix("http://")
        for suffix in ("-api.bipsync.com", ".bipsync.com"):
            text = text.removesuffix(suffix)
        return text


class ConnectForm(forms.Form):
    tenant = TenantField()
    kind = forms.ChoiceField(choices=CONNECT_CHOICES, initial=Kind.USER, label="Connect as")
    connection = forms.UUIDField(required=False, widget=forms.HiddenInput)


class MachineConnectionForm(forms.Form):
    tenant = TenantField()
    client_id = forms.CharField(label="Client id", max_length=200, strip=True)
    client_secret = forms.CharField(
        label="Client secret",
        max_length=500,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted; never shown again.",
    )
    bipsync_team_id = forms.CharField(
        label="Bipsync team id",
        max_length=24,
        min_length=24,
        validators=[bipsync_id_validator],
        help_text="24 hexadecimal characters, from your Bipsync team settings.",
    )
    scopes = forms.CharField(
        label="Scopes",
        initial="rest_api:read",
        max_length=500,
        help_text="Space separated; the team scope is added for you.",
    )

    def clean_bipsync_team_id(self) -> str:
        return str(self.cleaned_data["bipsync_team_id"]).lower()

    def clean_scopes(self) -> list[str]:
        try:
            scopes = normalize_scopes(self.cleaned_data["scopes"])
        except ConfigurationError:
            raise forms.ValidationError("Scopes are words separated by spaces.") from None
        return [scope for scope in scopes if not scope.startswith("team_")]
