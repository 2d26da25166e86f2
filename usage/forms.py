"""The analytics filter bar: GET parameters in, a typed ``UsageFilter`` (plus presentation choices) out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms

from projects.models import ApiKey, Environment, Organization, Project, ProviderAccount

from .selectors import UsageFilter, models_in_use

PRESETS = [
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
    ("this_month", "This month"),
    ("last_month", "Last month"),
    ("custom", "Custom range"),
]
DEFAULT_PRESET = "30d"
MAX_RANGE_DAYS = 731
GRANULARITY_CHOICES = [("day", "Day"), ("week", "Week"), ("month", "Month")]
GROUP_CHOICES = [("model", "Model"), ("project", "Project")]
# Everything the filter bar owns; other parameters (panel, format, page) are per request.
FILTER_FIELDS = (
    "preset",
    "start",
    "end",
    "project",
    "environment",
    "account",
    "key",
    "model",
    "granularity",
    "group_by",
)


def preset_range(preset: str, today: date) -> tuple[date, date]:
    """Return [start, end] local days for a preset; ``today`` is the organization's local date."""
    if preset == "7d":
        return today - timedelta(days=6), today
    if preset == "90d":
        return today - timedelta(days=89), today
    if preset == "this_month":
        return today.replace(day=1), today
    if preset == "last_month":
        last_day = today.replace(day=1) - timedelta(days=1)
        return last_day.replace(day=1), last_day
    return today - timedelta(days=29), today


class KeyChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.name)


class UsageFilterForm(forms.Form):
    """Bound to request.GET. Invalid fields fall back to their defaults and show an error."""

    preset = forms.ChoiceField(choices=PRESETS, required=False, label="Period")
    start = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    project = forms.ModelChoiceField(
        queryset=Project.objects.none(), to_field_name="slug", required=False, empty_label="All projects"
    )
    environment = forms.ChoiceField(choices=[("", "All environments"), *Environment.choices], required=False)
    account = forms.ModelChoiceField(
        queryset=ProviderAccount.objects.none(),
        to_field_name="slug",
        required=False,
        empty_label="All accounts",
        label="Provider account",
    )
    key = KeyChoiceField(
        queryset=ApiKey.objects.none(), to_field_name="public_id", required=False, empty_label="All keys"
    )
    model = forms.ChoiceField(choices=[], required=False)
    granularity = forms.ChoiceField(choices=GRANULARITY_CHOICES, required=False, label="Granularity")
    group_by = forms.ChoiceField(choices=GROUP_CHOICES, required=False, label="Group by")

    def __init__(
        self, data: Any, *, organization: Organization, today: date, hide: tuple[str, ...] = ()
    ) -> None:
        super().__init__(data)
        self.organization = organization
        self.today = today
        project_field = self.fields["project"]
        assert isinstance(project_field, forms.ModelChoiceField)
        project_field.queryset = Project.objects.filter(organization=organization, archived=False)
        account_field = self.fields["account"]
        assert isinstance(account_field, forms.ModelChoiceField)
        account_field.queryset = ProviderAccount.objects.filter(organization=organization)
        key_field = self.fields["key"]
        assert isinstance(key_field, forms.ModelChoiceField)
        key_field.queryset = ApiKey.objects.filter(organization=organization).only("public_id", "name")
        # Lazy: the model list is queried only when the field is rendered or a model is submitted.
        model_field = self.fields["model"]
        assert isinstance(model_field, forms.ChoiceField)
        model_field.choices = lambda: (
            [("", "All models")] + [(m, m) for m in models_in_use(organization=organization)]
        )
        for name in hide:
            del self.fields[name]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end < start:
                self.add_error("end", "The end date is before the start date.")
                data.pop("start", None)
                data.pop("end", None)
            elif (end - start).days + 1 > MAX_RANGE_DAYS:
                self.add_error("start", f"Pick at most {MAX_RANGE_DAYS} days.")
                data.pop("start", None)
                data.pop("end", None)
        return data

    def query(self) -> ExplorerQuery:
        """Validate and return the query; call once. Defaults stand in for missing or invalid fields."""
        self.is_valid()
        data = self.cleaned_data
        preset = data.get("preset") or DEFAULT_PRESET
        start, end = data.get("start"), data.get("end")
        # Dates that differ from the preset's own range mean the user typed a custom range. Dates equal
        # to another preset's range are that preset's dates left in the bar when the period was changed.
        preset_ranges = {preset_range(p, self.today) for p, _ in PRESETS if p != "custom"}
        if start and end and (preset == "custom" or (start, end) not in preset_ranges):
            preset = "custom"
        else:
            if preset == "custom":  # custom without a valid range
                preset = DEFAULT_PRESET
            start, end = preset_range(preset, self.today)
        assert start is not None and end is not None
        project = data.get("project")
        account = data.get("account")
        key = data.get("key")
        flt = UsageFilter(
            start=start,
            end=end,
            project_ids=(project.pk,) if project else (),
            environments=(data["environment"],) if data.get("environment") else (),
            account_ids=(account.pk,) if account else (),
            key_ids=(key.pk,) if key else (),
            models=(data["model"],) if data.get("model") else (),
        )
        params = {
            "preset": preset,
            "start": start.isoformat() if preset == "custom" else "",
            "end": end.isoformat() if preset == "custom" else "",
            "project": project.slug if project else "",
            "environment": data.get("environment") or "",
            "account": account.slug if account else "",
            "key": str(key.public_id) if key else "",
            "model": data.get("model") or "",
            "granularity": data.get("granularity") or "day",
            "group_by": data.get("group_by") or "model",
        }
        # Re-render the bar from the canonical state, with the effective dates filled in.
        self.data = {**params, "start": start.isoformat(), "end": end.isoformat()}
        return ExplorerQuery(
            flt=flt,
            preset=preset,
            granularity=params["granularity"],
            group_by=params["group_by"],
            params={k: v for k, v in params.items() if v},
        )


@dataclass(frozen=True)
class ExplorerQuery:
    """A validated filter-bar state: the data filter, presentation choices and the canonical parameters."""

    flt: UsageFilter
    preset: str
    granularity: str
    group_by: str
    params: dict[str, str]

    def querystring(self, **extra: str | int) -> str:
        """Return the canonical query string (no leading "?") with extra parameters appended."""
        merged: dict[str, str | int] = {**self.params, **{k: v for k, v in extra.items() if v != ""}}
        return urlencode(merged)

    def with_filter(self, **changes: Any) -> ExplorerQuery:
        return replace(self, flt=replace(self.flt, **changes))

    def with_params(self, **changes: str) -> ExplorerQuery:
        return replace(self, params={**self.params, **changes})
