from __future__ import annotations

from django import forms

from bipsync_partner.api.models import ApiKey


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=80, help_text="What the key is for, e.g. “CRM export”.")
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ApiKey.Scope.READ],
        error_messages={"required": "Choose at least one scope: read or write."},
    )
