"""Alert engine: evaluate budgets, balances, anomalies and data freshness; record each alert once; deliver.

Once means once: ``AlertEvent``'s unique constraints are the dedupe, and ``alert_event_record``
turns the losing INSERT of a race (two workers, a redelivered task) into "already raised".
Deliveries are created in the same transaction as their alert, so only the winner notifies.
Delivery is at-least-once: a crash between sending and marking "sent" resends on retry, with
the same delivery id, so webhook receivers can drop the repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.urls import reverse
from django.utils import timezone

from projects.models import AccountStatus, Membership, Organization, ProviderAccount, Role
from projects.money import format_money
from usage.models import StreamState, UsageDaily

from .. import rules
from ..forms import AlertPolicyForm
from ..models import (
    AlertDelivery,
    AlertEvent,
    AlertKind,
    AlertPolicy,
    Budget,
    DeliveryChannel,
    DeliveryStatus,
    WebhookSigning,
    new_webhook_secret,
)
from ..selectors import account_runways, budget_grid_window, budget_variances, budgets_for_org, spend_grid

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Quotaboard-Signature"
DELIVERY_HEADER = "X-Quotaboard-Delivery"
EVENT_HEADER = "X-Quotaboard-Event"
WEBHOOK_TIMEOUT_SECONDS = 10.0


class DeliveryError(Exception):
    """A delivery attempt failed in a way worth retrying (HTTP error status, network, SMTP)."""


@dataclass(frozen=True)
class AlertDraft:
    kind: str
    period: str
    title: str
    message: str
    severity: str = "warning"
    budget: Budget | None = None
    account: ProviderAccount | None = None
    threshold: int = 0
    data: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int | None, int | None, str, int]:
        budget_id = self.budget.pk if self.budget else None
        account_id = None if self.budget else (self.account.pk if self.account else None)
        return (self.kind, budget_id, account_id, self.period, self.threshold if self.budget else 0)


def _plain(amount: Decimal) -> str:
    """An exact decimal string without storage padding: Decimal("100.0000000000") -> "100"."""
    return format(amount.normalize(), "f")


def alert_policy_for(organization: Organization) -> AlertPolicy:
    policy, _ = AlertPolicy.objects.get_or_create(organization=organization)
    return policy


@transaction.atomic
def alert_policy_save(*, form: AlertPolicyForm) -> str | None:
    """Save a validated alert-settings form; return the webhook's new signing secret when this save
    set or changed the webhook URL (shown once by the caller), else None."""
    policy: AlertPolicy = form.save()
    return webhook_secret_after_save(
        signer=policy, url=policy.webhook_url, url_changed="webhook_url" in form.changed_data
    )


# --- Recording ----------------------------------------------------------------------------------------


def _admin_emails(organization: Organization) -> list[str]:
    return list(
        Membership.objects.filter(organization=organization, role=Role.ADMIN)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def alert_recipients(*, organization: Organization, budget: Budget | None, policy: AlertPolicy) -> list[str]:
    """Return who gets an alert by e-mail: the budget's members and extra addresses, else its project's
    owner and the organization's admins; alerts without a budget go to admins plus the policy's list."""
    emails: list[str] = []
    if budget is not None:
        emails = [u.email for u in budget.notify_members.all() if u.email] + _lines(budget.recipients)
        if not emails:
            owner = budget.project.owner if budget.project else None
            emails = ([owner.email] if owner and owner.email else []) + _admin_emails(organization)
    else:
        emails = _admin_emails(organization) + _lines(policy.recipients)
    return list(dict.fromkeys(emails))


def alert_event_record(
    *, organization: Organization, draft: AlertDraft, policy: AlertPolicy
) -> AlertEvent | None:
    """Insert the alert and its deliveries; return it, or None if this (subject, kind, period, threshold)
    was already raised — by an earlier run or by a concurrent worker that won the INSERT race."""
    try:
        with transaction.atomic():
            event = AlertEvent.objects.create(
                organization=organization,
                kind=draft.kind,
                budget=draft.budget,
                provider_account=draft.account,
                period=draft.period,
                threshold=draft.threshold if draft.budget else 0,
                severity=draft.severity,
                title=draft.title[:200],
                message=draft.message,
                data=draft.data,
            )
            emails = alert_recipients(organization=organization, budget=draft.budget, policy=policy)
            if emails:
                AlertDelivery.objects.create(
                    alert=event, channel=DeliveryChannel.EMAIL, target=",".join(emails)
                )
            webhook_url = (draft.budget.webhook_url if draft.budget else "") or policy.webhook_url
            if webhook_url:
                AlertDelivery.objects.create(alert=event, channel=DeliveryChannel.WEBHOOK, target=webhook_url)
    except IntegrityError:
        if _already_raised(draft):
            return None
        raise
    return event


def _already_raised(draft: AlertDraft) -> bool:
    if draft.budget is not None:
        return AlertEvent.objects.filter(
            budget=draft.budget, kind=draft.kind, period=draft.period, threshold=draft.threshold
        ).exists()
    return AlertEvent.objects.filter(
        budget__isnull=True, provider_account=draft.account, kind=draft.kind, period=draft.period
    ).exists()


# --- Evaluation ---------------------------------------------------------------------------------------


def budget_alert_drafts(*, organization: Organization, today: date) -> list[AlertDraft]:
    """Threshold crossings (month and day) and forecast-to-exceed for every budget, current month."""
    budgets = budgets_for_org(organization=organization)
    if not budgets:
        return []
    month = today.replace(day=1)
    start, end = budget_grid_window(month=month, today=today)
    grid = spend_grid(organization=organization, start=start, end=end)
    period = f"{today:%Y-%m}"
    drafts = []
    for row in budget_variances(budgets=budgets, grid=grid, month=month, today=today):
        budget, v = row.budget, row.variance
        cur = budget.currency
        figures = {
            "budget": _plain(v.budget),
            "actual": _plain(v.actual),
            "forecast": _plain(v.forecast),
            "currency": cur,
            "month": period,
        }
        for threshold in rules.thresholds_crossed(
            actual=v.actual, budget=v.budget, thresholds=budget.thresholds
        ):
            drafts.append(
                AlertDraft(
                    kind=AlertKind.BUDGET_THRESHOLD,
                    period=period,
                    budget=budget,
                    threshold=threshold,
                    severity="critical" if threshold >= 100 else "warning",
                    title=f"{budget} reached {threshold}% of its {today:%B} budget",
                    message=(
                        f"Spent {format_money(v.actual, cur)} of {format_money(v.budget, cur)} "
                        f"({v.used_percent.quantize(Decimal('0.1'))}%) in {today:%B %Y}. "
                        f"Forecast to month end: {format_money(v.forecast, cur)}."
                    ),
                    data=figures | {"threshold": str(threshold)},
                )
            )
        if v.state == "at-risk":
            drafts.append(
                AlertDraft(
                    kind=AlertKind.BUDGET_FORECAST,
                    period=period,
                    budget=budget,
                    title=f"{budget} is forecast to exceed its {today:%B} budget",
                    message=(
                        f"Forecast {format_money(v.forecast, cur)} against {format_money(v.budget, cur)}: "
                        f"{format_money(v.actual, cur)} so far plus {format_money(row.average_daily, cur)} a day "
                        f"(7-day average) for the {rules.days_left_in_month(today)} days left."
                    ),
                    data=figures,
                )
            )
        if budget.daily_amount and row.daily_actual is not None:
            for threshold in rules.thresholds_crossed(
                actual=row.daily_actual, budget=budget.daily_amount, thresholds=budget.thresholds
            ):
                drafts.append(
                    AlertDraft(
                        kind=AlertKind.BUDGET_DAILY_THRESHOLD,
                        period=today.isoformat(),
                        budget=budget,
                        threshold=threshold,
                        severity="critical" if threshold >= 100 else "warning",
                        title=f"{budget} reached {threshold}% of its daily budget on {today:%b %d}",
                        message=(
                            f"Spent {format_money(row.daily_actual, cur)} of "
                            f"{format_money(budget.daily_amount, cur)} today."
                        ),
                        data={
                            "actual": _plain(row.daily_actual),
                            "budget": _plain(budget.daily_amount),
                            "currency": cur,
                        },
                    )
                )
    return drafts


def low_balance_reasons(
    *, balance: Decimal, runway_days: Decimal | None, account: ProviderAccount
) -> list[str]:
    """Return which of the account's own low-balance thresholds the balance is under (empty: none).

    Runway under ``low_balance_runway_days`` (strictly), or balance under ``low_balance_amount``
    (strictly, in the account's currency). No recent spend means no runway figure, so only the
    amount can alert then.
    """
    reasons = []
    if runway_days is not None and runway_days < account.low_balance_runway_days:
        reasons.append(f"under {account.low_balance_runway_days} days of runway")
    if account.low_balance_amount is not None and balance < account.low_balance_amount:
        reasons.append(f"under {format_money(account.low_balance_amount, account.currency)}")
    return reasons


def account_alert_drafts(
    *, organization: Organization, today: date, now: datetime, policy: AlertPolicy
) -> list[AlertDraft]:
    """Low balance (each account against its own runway and amount thresholds) and spend anomalies."""
    drafts = []
    for item in account_runways(organization=organization, today=today):
        account, cur = item.account, item.currency
        if item.balance is not None:
            days = item.runway.days if item.runway and item.runway.days is not None else None
            reasons = low_balance_reasons(balance=item.balance, runway_days=days, account=account)
            if reasons:
                runway_text = (
                    f"about {days.quantize(Decimal('0.1'))} days at the 7-day average"
                    if days is not None
                    else "no recent spend"
                )
                drafts.append(
                    AlertDraft(
                        kind=AlertKind.LOW_BALANCE,
                        period=today.isoformat(),
                        account=account,
                        severity="critical",
                        title=f"{account.name} balance is low: {format_money(item.balance, cur)}",
                        message=(
                            f"{account.name} has {format_money(item.balance, cur)} left, {runway_text} "
                            f"(this account alerts {' or '.join(reasons)})."
                            + (
                                f" Suggested top-up: {format_money(item.suggested_topup, cur)}."
                                if item.suggested_topup
                                else ""
                            )
                        ),
                        data={
                            "account": account.name,
                            "balance": _plain(item.balance),
                            "currency": cur,
                            "runway_days": _plain(days) if days is not None else "",
                            "threshold_runway_days": str(account.low_balance_runway_days),
                            "threshold_amount": _plain(account.low_balance_amount)
                            if account.low_balance_amount is not None
                            else "",
                        },
                    )
                )
        for day in (today - timedelta(days=1), today):
            found = rules.spend_anomaly(
                daily=item.daily, day=day, factor=policy.anomaly_factor, min_amount=policy.anomaly_min_amount
            )
            if found is None:
                continue
            spend, baseline = found
            driver: Any = (
                UsageDaily.objects.filter(provider_account=account, day=day, currency=cur)
                .values("api_key__name", "model")
                .annotate(cost=Sum("cost"))
                .order_by("-cost")
                .first()
            )
            key_name = (driver or {}).get("api_key__name") or "an unassigned key"
            model = (driver or {}).get("model") or "?"
            drafts.append(
                AlertDraft(
                    kind=AlertKind.SPEND_ANOMALY,
                    period=day.isoformat(),
                    account=account,
                    title=f"Spend spike on {account.name}: {format_money(spend, cur)} on {day:%b %d}",
                    message=(
                        f"{format_money(spend, cur)} on {day:%b %d} against a 14-day average of "
                        f"{format_money(baseline, cur)} a day. Most of it: key {key_name}, model {model}"
                        + (f" ({format_money(driver['cost'], cur)})." if driver else ".")
                    ),
                    data={
                        "spend": _plain(spend),
                        "baseline": _plain(baseline),
                        "currency": cur,
                        "key": str(key_name),
                        "model": str(model),
                    },
                )
            )
    return drafts


def stale_alert_drafts(
    *, organization: Organization, today: date, now: datetime, policy: AlertPolicy
) -> list[AlertDraft]:
    """Accounts whose usage stream has not succeeded for ``stale_after_hours`` (paused accounts excluded)."""
    limit = now - timedelta(hours=policy.stale_after_hours)
    states = (
        StreamState.objects.filter(
            provider_account__organization=organization,
            stream="usage",
            provider_account__created_at__lt=limit,
        )
        .exclude(provider_account__status=AccountStatus.PAUSED)
        .filter(Q(last_success_at__isnull=True) | Q(last_success_at__lt=limit))
        .select_related("provider_account")
    )
    drafts = []
    for state in states:
        account = state.provider_account
        since = (
            f"since {timezone.localtime(state.last_success_at, organization.zoneinfo):%b %d %H:%M}"
            if state.last_success_at
            else "ever"
        )
        drafts.append(
            AlertDraft(
                kind=AlertKind.STALE_DATA,
                period=today.isoformat(),
                account=account,
                title=f"No fresh usage data from {account.name}",
                message=(
                    f"The usage stream of {account.name} has not succeeded {since}; budgets and alerts "
                    f"for it run on old numbers."
                    + (f" Last error: {state.last_error[:200]}" if state.last_error else "")
                ),
                data={"last_success_at": state.last_success_at.isoformat() if state.last_success_at else ""},
            )
        )
    return drafts


def alerts_evaluate(*, organization: Organization, now: datetime | None = None) -> list[AlertEvent]:
    """Evaluate every rule for the organization and return the alerts raised by this run (new ones only).

    Safe to run concurrently and repeatedly: already-raised alerts are skipped, and a race on the
    same alert leaves exactly one row (and one set of deliveries).
    """
    now = now or timezone.now()
    today = now.astimezone(organization.zoneinfo).date()
    policy = alert_policy_for(organization)
    drafts = [
        *budget_alert_drafts(organization=organization, today=today),
        *account_alert_drafts(organization=organization, today=today, now=now, policy=policy),
        *stale_alert_drafts(organization=organization, today=today, now=now, policy=policy),
    ]
    if not drafts:
        return []
    periods = {d.period for d in drafts}
    raised = {
        (kind, budget_id, None if budget_id else account_id, period, threshold if budget_id else 0)
        for kind, budget_id, account_id, period, threshold in AlertEvent.objects.filter(
            organization=organization, period__in=periods
        ).values_list("kind", "budget_id", "provider_account_id", "period", "threshold")
    }
    created = []
    for draft in drafts:
        if draft.key in raised:
            continue
        event = alert_event_record(organization=organization, draft=draft, policy=policy)
        if event is not None:
            created.append(event)
    return created


@transaction.atomic
def alert_acknowledge(*, alert: AlertEvent, user: object) -> bool:
    """Mark the alert acknowledged by ``user``; False if it already was (the first acknowledgement stays)."""
    return (
        AlertEvent.objects.filter(pk=alert.pk, acknowledged_at__isnull=True).update(
            acknowledged_at=timezone.now(), acknowledged_by=user
        )
        == 1
    )


# --- Delivery -----------------------------------------------------------------------------------------


def webhook_body(delivery: AlertDelivery) -> bytes:
    """Return the JSON body for a webhook delivery: the same bytes on every retry."""
    event = delivery.alert
    payload = {
        "delivery_id": str(delivery.public_id),
        "alert_id": str(event.public_id),
        "organization": event.organization.slug,
        "kind": event.kind,
        "severity": event.severity,
        "period": event.period,
        "threshold": event.threshold or None,
        "budget_id": str(event.budget.public_id) if event.budget else None,
        "account": event.provider_account.slug if event.provider_account else None,
        "title": event.title,
        "message": event.message,
        "data": event.data,
        "created_at": event.created_at.isoformat(),
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def webhook_signature(secret: str, body: bytes) -> str:
    """Return ``sha256=<hex HMAC-SHA256 of the body>``, keyed with the secret's UTF-8 bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_signer_for(delivery: AlertDelivery) -> WebhookSigning:
    """Return whose secret signs a delivery: the alert's budget when it has a webhook of its own (that
    is where the alert was sent), else the organization's alert policy.

    Decided when sending, so a retry after the webhook was reconfigured is signed with the secret
    configured now, which is the one its receiver was given.
    """
    budget = delivery.alert.budget
    if budget is not None and budget.webhook_url:
        return budget
    return alert_policy_for(delivery.alert.organization)


def webhook_secret_rotate(*, signer: WebhookSigning) -> str:
    """Give a budget or alert policy a new signing secret and return it: the only time it is shown.

    The old secret stops signing at once; deliveries already queued are signed with the new one.
    """
    secret = new_webhook_secret()
    signer.set_webhook_secret(secret)
    signer.save(update_fields=["webhook_secret_encrypted", "webhook_secret_hint"])
    return secret


def webhook_secret_after_save(*, signer: WebhookSigning, url: str, url_changed: bool) -> str | None:
    """Keep the signing secret in step with a just-saved webhook URL; return a new secret to show once.

    A webhook set for the first time, or pointed at another receiver, gets a fresh secret (the new
    receiver has to be given one, and a secret is never shown twice). A removed webhook drops its
    secret. An unchanged URL keeps its secret and returns None.
    """
    if not url:
        if signer.webhook_secret_encrypted:
            signer.set_webhook_secret("")
            signer.save(update_fields=["webhook_secret_encrypted", "webhook_secret_hint"])
        return None
    if url_changed or not signer.webhook_secret_encrypted:
        return webhook_secret_rotate(signer=signer)
    return None


def _send_webhook(delivery: AlertDelivery) -> None:
    body = webhook_body(delivery)
    secret = webhook_signer_for(delivery).webhook_secret()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Quotaboard-Webhook/1",
        SIGNATURE_HEADER: webhook_signature(secret, body),
        DELIVERY_HEADER: str(delivery.public_id),
        EVENT_HEADER: delivery.alert.kind,
    }
    try:
        response = httpx.post(
            delivery.target,
            content=body,
            headers=headers,
            timeout=WEBHOOK_TIMEOUT_SECONDS,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__} calling the webhook") from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"webhook answered HTTP {response.status_code}")


def _send_email(delivery: AlertDelivery) -> None:
    event = delivery.alert
    link = settings.SITE_URL.rstrip("/") + reverse("alert_list", args=[event.organization.slug])
    try:
        send_mail(
            subject=f"[Quotaboard] {event.title}",
            message=f"{event.message}\n\nAlert history: {link}\nDelivery {delivery.public_id}",
            from_email=None,
            recipient_list=delivery.target.split(","),
        )
    except OSError as exc:  # smtplib.SMTPException is an OSError
        raise DeliveryError(f"{type(exc).__name__} sending e-mail") from exc


def alert_delivery_send(*, delivery_id: int) -> str:
    """Send one delivery once more unless it already went out; return its status afterwards.

    Raises DeliveryError after recording the failed attempt, so the caller (a Celery task) retries.
    """
    delivery = AlertDelivery.objects.select_related(
        "alert", "alert__organization", "alert__budget", "alert__provider_account"
    ).get(pk=delivery_id)
    if delivery.status == DeliveryStatus.SENT:
        return delivery.status
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        attempts=delivery.attempts + 1, last_attempt_at=timezone.now()
    )
    try:
        if delivery.channel == DeliveryChannel.WEBHOOK:
            _send_webhook(delivery)
        else:
            _send_email(delivery)
    except DeliveryError as exc:
        AlertDelivery.objects.filter(pk=delivery.pk).update(last_error=str(exc)[:300])
        raise
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENT, sent_at=timezone.now(), last_error=""
    )
    return DeliveryStatus.SENT


def alert_delivery_give_up(*, delivery_id: int) -> None:
    """Mark a delivery failed after its last retry; the alert history shows it."""
    AlertDelivery.objects.filter(pk=delivery_id).exclude(status=DeliveryStatus.SENT).update(
        status=DeliveryStatus.FAILED
    )


def pending_delivery_ids(events: list[AlertEvent]) -> list[int]:
    return list(
        AlertDelivery.objects.filter(alert__in=events, status=DeliveryStatus.PENDING).values_list(
            "pk", flat=True
        )
    )
