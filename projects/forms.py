"""Tenancy forms: ingest tokens."""

from __future__ import annotations

from typing import Any

from django import forms

from .models import Organization, Project


class IngestTokenForm(forms.Form):
    name = forms.CharField(max_length=120, help_text="What pushes with it, e.g. “chat backend (prod)”.")
    project = forms.ModelChoiceField(
        queryset=Project.objects.none(),
        required=False,
        to_field_name="slug",
        empty_label="All projects",
        help_text="Limit the token to one project: it can then write and read only that project.",
    )
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, help_text="Empty: never expires (revoke it instead)."
    )

    def __init__(self, organization: Organization, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only this organization's projects: another org's slug is a form error, never a lookup.
        self.fields["project"].queryset = Project.objects.filter(organization=organization)  # type: ignore[attr-defined]
