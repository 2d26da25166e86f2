"""Thin Celery tasks for billing: JSON arguments (ids), load objects, call one service."""

from __future__ import annotations

from functools import partial
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone

from projects.models import ProviderAccount
from usage.ingest import ErrorKind, breaker_is_open
from usage.models import RunStatus, Stream
from usage.tasks import TransientIngestError, due_accounts

from .services.balances import balance_poll_run
from .services.topups import topups_sync


@shared_task(
    acks_late=True,
    autoretry_for=(TransientIngestError, OperationalError),
    retry_backoff=30,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=3,
    soft_time_limit=120,
    time_limit=150,
)
def poll_account_balance(account_id: int) -> str:
    """Poll one account's balance (and, for New API, its top-up history); returns the balance run status."""
    account = ProviderAccount.objects.select_related("organization").filter(pk=account_id).first()
    if account is None:
        return "missing"
    run = balance_poll_run(account=account)
    if run.status == RunStatus.SUCCESS and account.kind == "newapi":
        topups_sync(account=account)
    if run.status == RunStatus.FAILED and run.error_kind == ErrorKind.TRANSIENT:
        if breaker_is_open(account=account, stream=Stream.BALANCE):
            return str(run.status)  # the schedule backs off instead (see usage.ingest.breaker_pause_minutes)
        raise TransientIngestError(run.error)
    return str(run.status)


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def dispatch_balance_polls() -> int:
    """Enqueue ``poll_account_balance`` for every account that is due; returns how many were enqueued."""
    with transaction.atomic():
        due = due_accounts(
            stream=Stream.BALANCE,
            default_minutes=settings.CELERY_BALANCE_INTERVAL_MINUTES,
            now=timezone.now(),
        )
        for account in due:
            # Enqueued only if the transaction commits (celery-types lacks delay_on_commit).
            poll_account_balance.delay_on_commit(account.pk)  # type: ignore[attr-defined]
    return len(due)


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def evaluate_alerts(organization_id: int | None = None) -> int:
    """Evaluate alert rules for one organization (or all) and enqueue the new alerts' deliveries.

    Idempotent: an alert is raised once per (subject, kind, period, threshold), so a redelivered
    or overlapping run adds nothing. Returns the number of alerts raised.
    """
    from projects.models import Organization

    from .services.alerts import alerts_evaluate, pending_delivery_ids

    organizations = (
        Organization.objects.all()
        if organization_id is None
        else Organization.objects.filter(pk=organization_id)
    )
    raised = 0
    for organization in organizations:
        with transaction.atomic():
            events = alerts_evaluate(organization=organization)
            for delivery_id in pending_delivery_ids(events):
                transaction.on_commit(partial(deliver_alert.delay, delivery_id))
        raised += len(events)
    return raised


DELIVERY_MAX_RETRIES = 6
DELIVERY_BACKOFF_MAX = 1800


def delivery_backoff(retries: int) -> int:
    """Seconds before retry number ``retries + 1``: 30, 60, 120, ... doubling, capped at 30 minutes."""
    return min(30 << retries, DELIVERY_BACKOFF_MAX)


@shared_task(bind=True, acks_late=True, max_retries=DELIVERY_MAX_RETRIES, soft_time_limit=60, time_limit=90)
def deliver_alert(self: Any, delivery_id: int) -> str:
    """Send one alert delivery (e-mail or webhook); retry with exponential backoff, same delivery id.

    Backoff 30 s, 60 s, ... capped at 30 min (below the broker visibility timeout); after the last
    retry the delivery is marked failed. A delivery already sent is not sent again.
    """
    from .services.alerts import DeliveryError, alert_delivery_give_up, alert_delivery_send

    try:
        return alert_delivery_send(delivery_id=delivery_id)
    except DeliveryError as exc:
        if self.request.retries >= DELIVERY_MAX_RETRIES:
            alert_delivery_give_up(delivery_id=delivery_id)
            return "failed"
        raise self.retry(exc=exc, countdown=delivery_backoff(self.request.retries)) from exc


# --- Month summary e-mail (finance) ------------------------------------------------------------------


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def dispatch_month_summaries() -> int:
    """Enqueue ``send_month_summary`` for organizations whose local 1st-of-month 07:00 has passed.

    Runs hourly because "the 1st" starts at a different UTC hour in every zone; the once-per-month
    audit row makes repeats (and catch-up after downtime on the same day) harmless. Returns the count.
    """
    from projects.models import Organization

    from .services.summaries import summary_is_due

    now = timezone.now()
    enqueued = 0
    for organization in Organization.objects.all():
        month = summary_is_due(organization=organization, now=now)
        if month is not None:
            send_month_summary.delay(organization.pk, f"{month:%Y-%m}")
            enqueued += 1
    return enqueued


@shared_task(
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=60,
    max_retries=3,
    soft_time_limit=120,
    time_limit=150,
)
def send_month_summary(organization_id: int, month: str) -> int:
    """E-mail one organization's summary of ``month`` (YYYY-MM) to its finance members, once."""
    from projects.models import Organization

    from .review import parse_month
    from .services.summaries import month_summary_send

    organization = Organization.objects.filter(pk=organization_id).first()
    parsed = parse_month(month)
    if organization is None or parsed is None:
        return 0
    today = timezone.now().astimezone(organization.zoneinfo).date()
    return month_summary_send(organization=organization, month=parsed, today=today)


# The retry countdown waits unacknowledged at the broker; the visibility-timeout check reads this.
deliver_alert.max_countdown = DELIVERY_BACKOFF_MAX  # type: ignore[attr-defined]
