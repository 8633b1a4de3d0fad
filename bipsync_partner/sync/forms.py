"""Forms of the sync pages. Bad input becomes a message on the page, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django import forms
from django.forms.utils import flatatt
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from bipsync_partner.sync.models import SyncSchedule, TeamSyncSettings

#: Shortest and longest schedule periods a team may choose.
MIN_INTERVAL_MINUTES = 15
MAX_INTERVAL_MINUTES = 7 * 24 * 60


class TeamSyncSettingsForm(forms.ModelForm[TeamSyncSettings]):
    class Meta:
        model = TeamSyncSettings
        fields = ["sync_user_connections"]


class ScheduleForm(forms.Form):
    enabled = forms.BooleanField(required=False, label="Sync on a schedule")
    interval_minutes = forms.IntegerField(
        label="Every (minutes)", min_value=MIN_INTERVAL_MINUTES, max_value=MAX_INTERVAL_MINUTES
    )

    @classmethod
    def for_schedule(cls, schedule: SyncSchedule | None) -> ScheduleForm:
        if schedule is None:
            return cls(initial={"enabled": True, "interval_minutes": 60})
        return cls(
            initial={
                "enabled": schedule.enabled,
                "interval_minutes": schedule.interval_seconds // 60,
            }
        )

    def apply(self, schedule: SyncSchedule) -> None:
        data = self.cleaned_data
        interval = int(data["interval_minutes"]) * 60
        schedule.enabled = bool(data["enabled"])
        if interval != schedule.interval_seconds:
            schedule.interval_seconds = interval
            # The new period counts from the last success, so a shorter one takes effect at once.
            base = schedule.last_success_at or timezone.now()
            schedule.next_due_at = base + timedelta(seconds=interval)
        schedule.save(update_fields=["enabled", "interval_seconds", "next_due_at"])


class ChoicesSelect(forms.Select):
    """A ``<select>`` rendered in one pass. Django renders each option through a template of
    its own, which for a team's few hundred authors cost more than all of the research page's
    queries together (bench/README.md, "Research browser")."""

    def render(
        self,
        name: str,
        value: Any,
        attrs: dict[str, Any] | None = None,
        renderer: Any = None,
    ) -> SafeString:
        chosen = {str(v) for v in self.format_value(value)}
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            (
                (key, mark_safe(" selected") if str(key) in chosen else "", label)
                for key, label in self.choices
            ),
        )
        return format_html(
            '<select name="{}"{}>{}</select>',
            name,
            flatatt(self.build_attrs(self.attrs, attrs)),
            options,
        )


class ResearchFilterForm(forms.Form):
    """The research browser's filters. Every error is a sentence that names no value it was
    given (a 20,000-character search is not echoed back), and any error means no results."""

    #: Trigram matching needs three characters: a shorter "contains" can use no index and would
    #: read every document of the team (https://www.postgresql.org/docs/current/pgtrgm.html).
    MIN_SEARCH = 3
    MAX_SEARCH = 200

    q = forms.CharField(
        required=False,
        max_length=MAX_SEARCH,
        label="Title contains",
        error_messages={
            "max_length": f"Search for at most {MAX_SEARCH} characters.",
            "null_characters_not_allowed": "The search cannot contain a NUL character.",
        },
    )
    content_type = forms.ChoiceField(
        required=False,
        widget=ChoicesSelect,
        label="Content type",
        error_messages={"invalid_choice": "That is not a content type of the research you see."},
    )
    author = forms.ChoiceField(
        required=False,
        widget=ChoicesSelect,
        label="Author",
        error_messages={"invalid_choice": "That is not an author of the research you see."},
    )

    company = forms.CharField(
        required=False,
        max_length=200,
        label="Company or ticker",
        error_messages={
            "max_length": "A company name or ticker has at most 200 characters.",
            "null_characters_not_allowed": "A company name cannot contain a NUL character.",
        },
    )

    def __init__(
        self,
        *args: Any,
        content_types: dict[str, str],
        authors: list[tuple[str, str]],
        companies: Callable[[str], list[str]] = lambda text: [],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._companies = companies
        type_field = self.fields["content_type"]
        assert isinstance(type_field, forms.ChoiceField)
        type_field.choices = [("", "Any"), *content_types.items()]
        author_field = self.fields["author"]
        assert isinstance(author_field, forms.ChoiceField)
        author_field.choices = [("", "Anyone"), *authors]

    def clean_company(self) -> list[str]:
        """The ids of the categories the company name or ticker stands for."""
        text = str(self.cleaned_data.get("company") or "").strip()
        if not text:
            return []
        ids = self._companies(text)
        if not ids:
            raise forms.ValidationError(
                "No company of the synced research has that name or ticker."
            )
        return ids

    def clean_q(self) -> str:
        q = str(self.cleaned_data.get("q") or "")
        if q and len(q) < self.MIN_SEARCH:
            raise forms.ValidationError(f"Search for at least {self.MIN_SEARCH} characters.")
        return q
