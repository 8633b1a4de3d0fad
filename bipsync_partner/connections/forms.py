"""Forms of the connect pages. Tenants are validated slugs, never URLs (SSRF; Bipsync reference,
"Tenants and hosts")."""

from __future__ import annotations

from typing import Any

from django import forms

from bipsync_partner.connections.kinds import CONNECT_CHOICES, Kind
from bipsync_partner.connections.models import (
    Connection,
    bipsync_id_validator,
    tenant_validator,
)
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


LABEL_HELP = "Optional: what the team calls this connection, such as Research export."


def _label_field() -> forms.CharField:
    return forms.CharField(label="Label", max_length=80, required=False, help_text=LABEL_HELP)


class ScopesField(forms.CharField):
    """Space separated scopes; the team scope is Bipsync's business (added for you)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("label", "Scopes")
        kwargs.setdefault("initial", "rest_api:read")
        kwargs.setdefault("max_length", 500)
        kwargs.setdefault("help_text", "Space separated; the team scope is added for you.")
        super().__init__(**kwargs)

    def clean(self, value: Any) -> list[str]:
        text = super().clean(value)
        try:
            scopes = normalize_scopes(text)
        except ConfigurationError:
            raise forms.ValidationError("Scopes are words separated by spaces.") from None
        return [scope for scope in scopes if not scope.startswith("team_")]


class MachineConnectionForm(forms.Form):
    label = _label_field()
    tenant = TenantField()
    client_id = forms.CharField(label="Client id", max_length=200, strip=True)
    client_secret = forms.CharField(
        label="Client secret",
        max_length=500,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted; never shown again.",
    )
    # One sentence per mistake: the pattern says everything the length would, so the field has
    # no length validators of its own (the widget still stops typing at 24).
    bipsync_team_id = forms.CharField(
        label="Bipsync team id",
        validators=[bipsync_id_validator],
        help_text="24 hexadecimal characters, from your Bipsync team settings.",
        widget=forms.TextInput(attrs={"maxlength": 24}),
    )
    scopes = ScopesField()

    def clean_bipsync_team_id(self) -> str:
        return str(self.cleaned_data["bipsync_team_id"]).lower()


class MachineReconnectForm(forms.Form):
    """A machine connection's application checked again, with a new client secret or the
    stored one."""

    client_secret = forms.CharField(
        label="Client secret",
        max_length=500,
        strip=True,
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted; never shown again. Leave empty to try the stored one again.",
    )
    scopes = ScopesField()


class LabelForm(forms.ModelForm[Connection]):
    class Meta:
        model = Connection
        fields = ["label"]
        help_texts = {"label": LABEL_HELP}
