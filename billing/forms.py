"""Billing forms: budgets, top-ups, CSV import, console balances, auto-recharge rules.

Every amount is a Decimal form field (no float on the way in); messages say what to fix.
"""

from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import QuerySet

from projects.models import Organization, Project, ProviderAccount, validate_currency

from .models import AlertPolicy, AutoRechargeRule, Budget, TopUpStatus
from .rules import parse_thresholds


def amount_field(**kwargs: Any) -> forms.DecimalField:
    """A Decimal amount input: up to 10 integer digits and 6 decimals (never a float)."""
    return forms.DecimalField(max_digits=16, decimal_places=6, **kwargs)


POSITIVE = "Amount must be greater than 0"


def _plain(value: Decimal) -> str:
    """10.0000000000 -> "10", 12.5000 -> "12.5" (never exponent notation)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _positive(value: Decimal | None, *, required: bool = True) -> Decimal | None:
    if value is None:
        if required:
            raise ValidationError(POSITIVE)
        return None
    if value <= 0:
        raise ValidationError(POSITIVE)
    return value


def _email_lines(text: str) -> str:
    emails = [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
    bad = []
    for email in emails:
        try:
            validate_email(email)
        except ValidationError:
            bad.append(email)
    if bad:
        raise ValidationError(f"Not an e-mail address: {', '.join(bad[:3])}")
    return "\n".join(emails)


class BudgetForm(forms.ModelForm):  # type: ignore[type-arg]
    monthly_amount = amount_field(
        label="Monthly amount",
        error_messages={"invalid": "Enter the amount as a number, e.g. 200"},
    )
    daily_amount = amount_field(
        label="Daily amount (optional)",
        required=False,
        error_messages={"invalid": "Enter the amount as a number, e.g. 20"},
    )
    thresholds = forms.CharField(
        initial="50, 80, 100", help_text="Percentages of the budget that alert, once per period."
    )
    notify_members = forms.ModelMultipleChoiceField(
        queryset=User.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Notify members",
    )

    class Meta:
        model = Budget
        fields = [
            "project",
            "name",
            "monthly_amount",
            "daily_amount",
            "currency",
            "model",
            "thresholds",
            "notify_members",
            "recipients",
            "webhook_url",
        ]
        labels = {"recipients": "Extra e-mail recipients", "webhook_url": "Webhook URL (optional)"}
        widgets = {"recipients": forms.Textarea(attrs={"rows": 2})}

    def __init__(
        self,
        *args: Any,
        organization: Organization,
        projects: QuerySet[Project],
        allow_org: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.organization = organization
        project_field: forms.ModelChoiceField = self.fields["project"]  # type: ignore[type-arg,assignment]
        project_field.queryset = projects
        project_field.required = not allow_org
        project_field.empty_label = "Whole organization" if allow_org else None
        project_field.help_text = "Empty: the whole organization." if allow_org else "Projects you own."
        members_field: forms.ModelMultipleChoiceField = self.fields["notify_members"]  # type: ignore[type-arg,assignment]
        members_field.queryset = User.objects.filter(memberships__organization=organization).order_by(
            "username"
        )
        if not self.is_bound and self.instance.pk is None:
            self.initial.setdefault("currency", organization.currency)
        if self.instance.pk is not None and isinstance(self.instance.thresholds, list):
            self.initial["thresholds"] = ", ".join(str(t) for t in self.instance.thresholds)
        # Stored amounts come back with the column's full scale (100.0000000000), which the field's
        # 6 decimal places would refuse: show them as entered, so saving unchanged amounts works.
        for name in ("monthly_amount", "daily_amount"):
            value = self.initial.get(name)
            if isinstance(value, Decimal):
                self.initial[name] = _plain(value)

    def clean_monthly_amount(self) -> Decimal | None:
        return _positive(self.cleaned_data.get("monthly_amount"))

    def clean_daily_amount(self) -> Decimal | None:
        return _positive(self.cleaned_data.get("daily_amount"), required=False)

    def clean_thresholds(self) -> list[int]:
        try:
            return parse_thresholds(self.cleaned_data.get("thresholds", ""))
        except ValueError as exc:
            raise ValidationError(f"Thresholds: {exc}") from exc

    def clean_currency(self) -> str:
        code = str(self.cleaned_data.get("currency", "")).strip().upper()
        validate_currency(code)
        return code

    def clean_recipients(self) -> str:
        return _email_lines(self.cleaned_data.get("recipients", ""))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        monthly, daily = cleaned.get("monthly_amount"), cleaned.get("daily_amount")
        if monthly is not None and daily is not None and daily > monthly:
            self.add_error("daily_amount", "The daily amount cannot be larger than the monthly amount")
        return cleaned


class TopUpForm(forms.Form):
    account = forms.ModelChoiceField(queryset=ProviderAccount.objects.none(), empty_label=None)
    amount = amount_field(help_text="Paid amount (or the granted amount for a grant).")
    bonus = amount_field(required=False, min_value=Decimal(0), help_text="Bonus credit or voucher, if any.")
    currency = forms.CharField(max_length=3, required=False, help_text="Empty: the account's currency.")
    status = forms.ChoiceField(choices=TopUpStatus.choices, initial=TopUpStatus.CREDITED)
    kind = forms.ChoiceField(choices=[("paid", "Paid"), ("grant", "Granted credit")], initial="paid")
    order_ref = forms.CharField(max_length=200, required=False, label="Order number")
    payment_method = forms.CharField(max_length=64, required=False)
    purchased_on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    expires_on = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Empty: OpenAI credits expire one year after purchase; others never.",
    )
    is_auto_recharge = forms.BooleanField(required=False, label="This was an auto-recharge")
    note = forms.CharField(max_length=300, required=False)

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.fields["account"].queryset = ProviderAccount.objects.filter(organization=organization)  # type: ignore[attr-defined]

    def clean_amount(self) -> Decimal | None:
        return _positive(self.cleaned_data.get("amount"))

    def clean_currency(self) -> str:
        code = str(self.cleaned_data.get("currency", "")).strip().upper()
        if code:
            validate_currency(code)
        return code

    def local_midnight(self, name: str) -> datetime | None:
        day = self.cleaned_data.get(name)
        return datetime.combine(day, time.min, tzinfo=self.organization.zoneinfo) if day else None


class TopUpImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header row; up to 20 MB.")


class ConsoleBalanceForm(forms.Form):
    remaining = amount_field(min_value=Decimal(0), label="Balance shown in the provider console")
    taken_at = forms.DateTimeField(
        label="Read at", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), required=False
    )


class AutoRechargeRuleForm(forms.ModelForm):  # type: ignore[type-arg]
    threshold = amount_field(min_value=Decimal(0), label="Recharge when the balance falls below")
    amount = amount_field(label="Recharge amount")
    monthly_limit = amount_field(required=False, min_value=Decimal(0), label="Monthly limit (optional)")

    class Meta:
        model = AutoRechargeRule
        fields = ["enabled", "threshold", "amount", "monthly_limit"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Stored amounts come back with the column's full scale (10.0000000000): show them as entered.
        for name in ("threshold", "amount", "monthly_limit"):
            value = self.initial.get(name)
            if isinstance(value, Decimal):
                self.initial[name] = _plain(value)

    def clean_amount(self) -> Decimal | None:
        return _positive(self.cleaned_data.get("amount"))


class TopUpPlannerForm(forms.Form):
    """The planner's two knobs (GET): days to cover and safety factor; defaults come from the account."""

    days = forms.IntegerField(
        min_value=1,
        max_value=365,
        label="Days to cover",
        error_messages={
            "min_value": "Cover at least 1 day",
            "max_value": "Cover at most 365 days",
            "invalid": "Enter a whole number of days",
        },
    )
    factor = forms.DecimalField(
        min_value=Decimal(1),
        max_value=Decimal(5),
        max_digits=4,
        decimal_places=2,
        label="Safety factor",
        error_messages={
            "min_value": "The safety factor is at least 1 (no buffer)",
            "max_value": "A safety factor above 5 is not a buffer, it is a stockpile",
            "invalid": "Enter a number such as 1.5",
        },
    )


class AccountLowBalanceForm(forms.ModelForm):  # type: ignore[type-arg]
    """One provider account's low-balance alert (admins): runway days and an optional amount floor."""

    low_balance_runway_days = forms.IntegerField(
        label="Alert under this many days of runway",
        help_text="Runway = balance ÷ average daily spend of the last 7 days.",
        error_messages={
            "required": "Enter a number of days, e.g. 7",
            "invalid": "Enter a whole number of days, e.g. 7",
        },
    )
    low_balance_amount = amount_field(
        required=False,
        label="Also alert below this balance (optional)",
        error_messages={"invalid": "Enter the amount as a number, e.g. 25"},
    )

    class Meta:
        model = ProviderAccount
        fields = ["low_balance_runway_days", "low_balance_amount"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        account: ProviderAccount = self.instance
        self.fields[
            "low_balance_amount"
        ].label = f"Also alert below this balance, in {account.currency} (optional)"
        self.fields["low_balance_amount"].help_text = "Empty: alert on runway only."
        value = self.initial.get("low_balance_amount")
        if isinstance(value, Decimal):
            self.initial["low_balance_amount"] = _plain(value)

    def clean_low_balance_runway_days(self) -> int:
        days: int = self.cleaned_data["low_balance_runway_days"]
        if days < 1:
            raise ValidationError("Use at least 1 day of runway")
        if days > 365:
            raise ValidationError("Use at most 365 days of runway")
        return days

    def clean_low_balance_amount(self) -> Decimal | None:
        amount: Decimal | None = self.cleaned_data.get("low_balance_amount")
        if amount is not None and amount < 0:
            raise ValidationError("The amount cannot be negative; leave it empty for no floor")
        return amount


class AlertPolicyForm(forms.ModelForm):  # type: ignore[type-arg]
    """Organization-wide alert limits (admins): spend anomaly, stale data, the webhook for alerts that
    belong to no budget. Low-balance thresholds are per account (AccountLowBalanceForm)."""

    anomaly_min_amount = amount_field(min_value=Decimal(0), label="Ignore spikes on days smaller than")

    class Meta:
        model = AlertPolicy
        fields = [
            "anomaly_factor",
            "anomaly_min_amount",
            "stale_after_hours",
            "webhook_url",
            "recipients",
        ]
        labels = {
            "anomaly_factor": "Spike: a day above this many times its 14-day average",
            "stale_after_hours": "Stale data: alert after this many hours without a sync",
            "webhook_url": "Webhook URL for alerts outside budgets",
            "recipients": "Extra e-mail recipients",
        }
        widgets = {"recipients": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("anomaly_min_amount", "anomaly_factor"):
            value = self.initial.get(name)
            if isinstance(value, Decimal):
                self.initial[name] = _plain(value)

    def clean_anomaly_factor(self) -> Decimal:
        factor: Decimal = self.cleaned_data["anomaly_factor"]
        if factor <= 1:
            raise ValidationError("A spike must be more than 1 times the average")
        return factor

    def clean_stale_after_hours(self) -> int:
        hours: int = self.cleaned_data["stale_after_hours"]
        if hours < 1:
            raise ValidationError("Use at least 1 hour")
        return hours

    def clean_recipients(self) -> str:
        lines = [line.strip() for line in self.cleaned_data["recipients"].splitlines() if line.strip()]
        for line in lines:
            try:
                validate_email(line)
            except ValidationError as exc:
                raise ValidationError(f"Not an e-mail address: {line}") from exc
        return "\n".join(lines)
