"""The endpoint form: an address the checks accept, and the event types it receives."""

from __future__ import annotations

from django import forms

from bipsync_partner.events import addresses
from bipsync_partner.events.models import EVENT_TYPES, Endpoint


class EndpointForm(forms.ModelForm[Endpoint]):
    url = forms.URLField(label="URL", max_length=2000, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=[(name, f"{name}: {meaning}") for name, meaning in EVENT_TYPES.items()],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one event type."},
    )

    class Meta:
        model = Endpoint
        fields = ["url", "description", "event_types"]

    def clean_url(self) -> str:
        url = str(self.cleaned_data["url"])
        try:
            addresses.check(url)
        except addresses.AddressRefused as refused:
            raise forms.ValidationError(str(refused)) from None
        return url
