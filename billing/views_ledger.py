"""Balances (runway, burn, suggested top-up, derived balances) and the top-up ledger."""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from projects.http import AuthedRequest
from projects.models import ProviderAccount, Role
from projects.selectors import OrgAccess, get_account_for_user, get_org_for_user, refused_choices

from . import charts, rules
from .forms import (
    AccountLowBalanceForm,
    AutoRechargeRuleForm,
    ConsoleBalanceForm,
    TopUpForm,
    TopUpImportForm,
    TopUpPlannerForm,
)
from .models import AutoRechargeRule, TopUp
from .selectors import AccountRunway, account_runways, auto_recharged_in_month, balance_history
from .services.ledger import IMPORT_COLUMNS, balance_snapshot_record_manual, topup_record, topups_import_csv

HISTORY_DAYS = 90
MAX_IMPORT_BYTES = 20 * 1024 * 1024
RECHARGE_PROJECTION_DAYS = 30
DETAIL_TEMPLATE = "billing/balance_detail.html"


def _can_edit_ledger(access: OrgAccess) -> bool:
    """Top-ups and console balances are money records: admins and finance keep them."""
    return access.role in {Role.ADMIN, Role.FINANCE}


def _today_now(access: OrgAccess) -> tuple[datetime, date]:
    now = timezone.now()
    return now, now.astimezone(access.organization.zoneinfo).date()


@require_GET
@login_required
def balance_list(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """Every provider account: balance, 7/30-day burn, runway with band, run-out date, suggested top-up."""
    access = get_org_for_user(request.user, org_slug)
    _, today = _today_now(access)
    context = {
        "access": access,
        "org": access.organization,
        "nav": "balances",
        "today": today,
        "items": account_runways(organization=access.organization, today=today),
        "days_to_cover": rules.DAYS_TO_COVER,
        "factors": rules.SAFETY_FACTORS,
    }
    return render(request, "billing/balance_list.html", context)


def _recharge_projection(
    item: AccountRunway, rule: AutoRechargeRule | None, today: date, tz: zoneinfo.ZoneInfo
) -> dict[str, Any] | None:
    """This month's auto-recharges so far, the allowance left, and the next 30 days under the rule at
    the 7-day burn rate (rules.auto_recharge_projection: when recharges fire, each month's cash-out)."""
    if rule is None or not rule.enabled:
        return None
    first, last = rules.month_bounds(today)
    start = datetime.combine(first, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    so_far = auto_recharged_in_month(account=item.account, start=start, end=end)
    projection = None
    if item.balance is not None:
        projection = rules.auto_recharge_projection(
            opening_balance=item.balance,
            threshold=rule.threshold,
            amount=rule.amount,
            monthly_limit=rule.monthly_limit,
            daily_spend=item.burn_7,
            today=today,
            days=RECHARGE_PROJECTION_DAYS,
            already_recharged=so_far,
        )
    return {
        "so_far": so_far,
        "allowance": rules.auto_recharge_allowance(monthly_limit=rule.monthly_limit, recharged=so_far),
        "projection": projection,
        "days": RECHARGE_PROJECTION_DAYS,
        "months": [
            {"month": month, "cash_out": amount, "limit_reached": projection.limit_reached[month]}
            for month, amount in projection.cash_out.items()
        ]
        if projection
        else [],
    }


def _planner(request: AuthedRequest, item: AccountRunway) -> tuple[TopUpPlannerForm, rules.TopUpPlan | None]:
    """The top-up planner with the account's defaults or the user's edited days and safety factor (GET)."""
    initial: dict[str, Any] = {"days": rules.DAYS_TO_COVER, "factor": item.factor}
    edited = "plan-days" in request.GET or "plan-factor" in request.GET
    form = TopUpPlannerForm(request.GET if edited else None, initial=initial, prefix="plan")
    if edited and not form.is_valid():
        return form, None
    days: int = form.cleaned_data["days"] if edited else rules.DAYS_TO_COVER
    factor: Decimal = form.cleaned_data["factor"] if edited else item.factor
    plan = rules.plan_topup(
        average_daily=item.burn_7,
        safety_factor=factor,
        days_to_cover=days,
        terms=item.terms,
        balance=item.balance or Decimal(0),
    )
    return form, plan


def _detail_context(
    request: AuthedRequest,
    access: OrgAccess,
    account: ProviderAccount,
    *,
    console_form: ConsoleBalanceForm | None = None,
    rule_form: AutoRechargeRuleForm | None = None,
    low_balance_form: AccountLowBalanceForm | None = None,
) -> dict[str, Any]:
    now, today = _today_now(access)
    rule = AutoRechargeRule.objects.filter(provider_account=account).first()
    item = account_runways(organization=access.organization, today=today, account=account)[0]
    since = now - timedelta(days=HISTORY_DAYS)
    history = balance_history(account=account, since=since)
    planner_form, plan = _planner(request, item)
    is_admin = access.role == Role.ADMIN
    return {
        "access": access,
        "org": access.organization,
        "nav": "balances",
        "today": today,
        "item": item,
        "account": account,
        "history_figure": charts.balance_history_figure(
            history, currency=account.currency, window=(since, now)
        )
        if history
        else None,
        "recent": list(reversed(history[-10:])),
        "rule": rule,
        "recharge": _recharge_projection(item, rule, today, access.organization.zoneinfo),
        "planner_form": planner_form,
        "plan": plan,
        "console_form": (console_form or ConsoleBalanceForm(prefix="console"))
        if _can_edit_ledger(access)
        else None,
        "rule_form": (rule_form or AutoRechargeRuleForm(instance=rule, prefix="rule")) if is_admin else None,
        "low_balance_form": (low_balance_form or AccountLowBalanceForm(instance=account, prefix="low"))
        if is_admin
        else None,
        "days_to_cover": rules.DAYS_TO_COVER,
        "expiring_days": rules.EXPIRING_SOON_DAYS,
    }


@require_http_methods(["GET", "POST"])
@login_required
def balance_detail(request: AuthedRequest, org_slug: str, account_slug: str) -> HttpResponse:
    """One account: balance history chart, burn, runway, derived balance with credit lots and drift,
    auto-recharge rule, low-balance alert thresholds; POST ``action=console`` records a console
    balance, ``action=rule`` saves the auto-recharge rule."""
    access, account = get_account_for_user(request.user, org_slug, account_slug)
    now, _ = _today_now(access)
    console_form = rule_form = None
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "console":
            if not _can_edit_ledger(access):
                raise PermissionDenied("Only admins and finance enter balances")
            console_form = ConsoleBalanceForm(request.POST, prefix="console")
            if console_form.is_valid():
                taken_at = console_form.cleaned_data["taken_at"] or now
                balance_snapshot_record_manual(
                    account=account, remaining=console_form.cleaned_data["remaining"], taken_at=taken_at
                )
                return redirect("balance_detail", org_slug, account.slug)
        elif action == "rule":
            if access.role != Role.ADMIN:
                raise PermissionDenied("Only admins change auto-recharge rules")
            rule = AutoRechargeRule.objects.filter(provider_account=account).first()
            rule_form = AutoRechargeRuleForm(request.POST, instance=rule, prefix="rule")
            if rule_form.is_valid():
                saved = rule_form.save(commit=False)
                saved.provider_account = account
                saved.currency = account.currency
                saved.save()
                return redirect("balance_detail", org_slug, account.slug)
        else:
            raise PermissionDenied("Unknown action")
    context = _detail_context(request, access, account, console_form=console_form, rule_form=rule_form)
    return render(request, DETAIL_TEMPLATE, context)


@require_http_methods(["GET", "POST"])
@login_required
def account_low_balance_edit(request: AuthedRequest, org_slug: str, account_slug: str) -> HttpResponse:
    """POST (admins, like the account's other settings): save the account's low-balance thresholds.

    htmx gets the thresholds card back (errors, or the saved values with a confirmation); plain
    POSTs go back to the balance page, or get it with the errors. GET goes to the balance page.
    """
    access, account = get_account_for_user(request.user, org_slug, account_slug)
    if request.method == "GET":
        return redirect("balance_detail", org_slug, account.slug)
    if access.role != Role.ADMIN:
        raise PermissionDenied("Only admins change an account's alert thresholds")
    form = AccountLowBalanceForm(request.POST, instance=account, prefix="low")
    saved = form.is_valid()
    if saved:
        account = form.save()
        form = AccountLowBalanceForm(instance=account, prefix="low")
    if request.htmx:
        context = {
            "access": access,
            "org": access.organization,
            "account": account,
            "low_balance_form": form,
            "low_balance_saved": saved,
        }
        # 200 with the errors in the fragment: htmx does not swap 4xx responses.
        return render(request, f"{DETAIL_TEMPLATE}#low-balance-card", context)
    if saved:
        return redirect("balance_detail", org_slug, account.slug)
    context = _detail_context(request, access, account, low_balance_form=form)
    return render(request, DETAIL_TEMPLATE, context, status=400)


@require_GET
@login_required
def topup_list(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """The top-up ledger (only credited ones count), with expiring-soon warnings and expired waste."""
    access = get_org_for_user(request.user, org_slug)
    _, today = _today_now(access)
    topups = list(
        TopUp.objects.filter(provider_account__organization=access.organization)
        .select_related("provider_account")
        .order_by("-created_at")[:500]
    )
    derived = [i for i in account_runways(organization=access.organization, today=today) if i.derived]
    context = {
        "access": access,
        "org": access.organization,
        "nav": "topups",
        "today": today,
        "topups": topups,
        "derived": derived,
        "expiring": [(i, lot) for i in derived for lot in i.derived.ledger.expiring_within()],  # type: ignore[union-attr]
        "wasted": [
            (i, i.derived.ledger.wasted) for i in derived if i.derived and i.derived.ledger.wasted > 0
        ],
        "can_edit": _can_edit_ledger(access),
    }
    return render(request, "billing/topup_list.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def topup_create(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """Enter a top-up by hand (admins and finance)."""
    access = get_org_for_user(request.user, org_slug)
    if not _can_edit_ledger(access):
        raise PermissionDenied("Only admins and finance record top-ups")
    form = TopUpForm(request.POST or None, organization=access.organization, prefix="topup")
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        purchased = form.local_midnight("purchased_on")
        assert purchased is not None
        try:
            with transaction.atomic():
                topup_record(
                    account=data["account"],
                    amount=data["amount"],
                    currency=data["currency"] or None,
                    bonus=data["bonus"] or Decimal(0),
                    status=data["status"],
                    order_ref=data["order_ref"],
                    payment_method=data["payment_method"],
                    created_at=purchased,
                    expires_at=form.local_midnight("expires_on"),
                    is_grant=data["kind"] == "grant",
                    is_auto_recharge=data["is_auto_recharge"],
                    note=data["note"],
                )
        except IntegrityError:
            form.add_error("order_ref", "This account already has a top-up with this order number")
        else:
            return redirect("topup_list", org_slug)
    if form.is_bound:
        refused_choices(form, request.user, org_slug)
    context = {"access": access, "org": access.organization, "nav": "topups", "form": form}
    return render(request, "billing/topup_form.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def topup_import(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """Import top-ups from CSV: good rows land, bad rows are listed by line, re-imports add nothing."""
    access = get_org_for_user(request.user, org_slug)
    if not _can_edit_ledger(access):
        raise PermissionDenied("Only admins and finance import top-ups")
    form = TopUpImportForm(request.POST or None, request.FILES or None)
    result = None
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        if upload.size > MAX_IMPORT_BYTES:
            form.add_error("file", "The file is larger than 20 MB")
        else:
            result = topups_import_csv(organization=access.organization, stream=upload.file)
    context = {
        "access": access,
        "org": access.organization,
        "nav": "topups",
        "form": form,
        "result": result,
        "columns": ", ".join(IMPORT_COLUMNS),
    }
    return render(request, "billing/topup_import.html", context)
