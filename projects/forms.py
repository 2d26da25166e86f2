"""Tenancy forms: members, ingest tokens."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import User

from .models import Organization, Project, Role


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


class MemberAddForm(forms.Form):
    """Add an existing account to the organization, found by username or e-mail address."""

    who = forms.CharField(
        label="Username or e-mail",
        max_length=254,
        help_text="An existing Quotaboard account. New people get one from an operator first.",
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)

    def clean_who(self) -> User:
        who = self.cleaned_data["who"].strip()
        by_name = User.objects.filter(username__iexact=who)
        by_email = User.objects.filter(email__iexact=who) if "@" in who else User.objects.none()
        matches = list((by_name | by_email).distinct()[:2])
        if not matches:
            raise forms.ValidationError(f"No account “{who}”.")
        if len(matches) > 1:
            raise forms.ValidationError(f"Several accounts share “{who}”: use the username.")
        return matches[0]


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
