"""Thin Celery tasks: JSON arguments (ids, ISO dates), load objects, call one service."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import partial

from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import shared_task
from celery.signals import task_failure
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from projects.models import AccountStatus, Organization, ProviderAccount

from . import ingest, services
from .models import RunStatus, Stream, StreamState
from .providers.http import TransientProviderError
from .providers.registry import connector_class


# A database restart mid-rebuild rolls the transaction back; the retry recomputes from raw records.
@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=30,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=3,
    soft_time_limit=600,
    time_limit=660,
)
def rebuild_rollups(organization_id: int, since_iso: str | None = None) -> int:
    """Recompute an organization's rollups from raw records; returns daily rows written. Idempotent."""
    organization = Organization.objects.get(pk=organization_id)
    since = date.fromisoformat(since_iso) if since_iso else None
    return services.rollup_rebuild(organization=organization, since=since)


# Not acks_late: an import can outlast the broker's visibility timeout, and a redelivered copy would
# only find the job already claimed. A worker killed mid-import leaves the job "running"; re-upload
# the file (re-importing adds nothing twice). Explicit, because the app default is task_acks_late=True.
@shared_task(acks_late=False, soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def run_import(import_id: int) -> str:
    """Run one queued file import (ImportJob pk); returns its final status, or "skipped" if claimed."""
    from .imports import import_job_run

    job = import_job_run(job_id=import_id)
    return job.status if job else "skipped"


class TransientIngestError(TransientProviderError):
    """Raised by a task after a run failed transiently (429/5xx/timeout), so Celery retries it later."""


@shared_task(
    acks_late=True,
    autoretry_for=(TransientIngestError, OperationalError, InterfaceError),
    retry_backoff=30,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=3,
    soft_time_limit=600,
    time_limit=660,
)
def ingest_account_usage(account_id: int, since_iso: str | None = None, until_iso: str | None = None) -> str:
    """Ingest one account's usage (from its cursor, or [since, until) when given); returns the run status.

    Idempotent: rows upsert by natural key and a second copy of this task finds the lease taken.
    """
    account = ProviderAccount.objects.select_related("organization").filter(pk=account_id).first()
    if account is None:
        return "missing"
    # The lease is held in this execution's name, prefixed by the message's task id so the worker's
    # main process can free it if the pool child dies (on_worker_lost below). Unique per execution:
    # a copy Redis redelivers while this one still runs (visibility timeout) carries the same task
    # id, and must find the lease taken and skip rather than fetch and write alongside it.
    # (A copy Celery requeues because this process died takes the lease over: see lease_acquire.)
    owner = ingest.execution_owner(ingest_account_usage.request.id or "")
    if since_iso:
        end = datetime.fromisoformat(until_iso) if until_iso else timezone.now()
        run = ingest.usage_ingest_window(
            account=account, start=datetime.fromisoformat(since_iso), end=end, lease_owner=owner
        )
    else:
        run = ingest.usage_ingest_account(account=account, lease_owner=owner)
    if run.status == RunStatus.FAILED and run.error_kind == ingest.ErrorKind.TRANSIENT:
        if ingest.breaker_is_open(account=account, stream=Stream.USAGE):
            # The schedule now backs off (next_run_at); retrying here would hammer a failing provider.
            return str(run.status)
        raise TransientIngestError(run.error)
    if run.status == RunStatus.SUCCESS and (run.rows_new or run.rows_updated):
        # Rollups were updated with the rows: evaluate the organization's alerts now rather than at the
        # next 10-minute beat (idempotent, so overlapping with the beat run is harmless).
        from billing.tasks import evaluate_alerts

        transaction.on_commit(partial(evaluate_alerts.delay, account.organization_id))
    return str(run.status)


@task_failure.connect(sender=ingest_account_usage)
def on_worker_lost(
    sender: object = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: tuple[object, ...] | None = None,
    **kwargs: object,
) -> None:
    """In the worker's main process: a pool child died running an ingest (os._exit, OOM kill), or
    the pool killed it at the hard time limit.

    Celery acks the message (task_reject_on_worker_lost is off), so nothing would ever close the
    run: record it as "crashed" with Celery's reason and free the lease now. After CRASH_LIMIT
    such runs in a row the stream stops being run (see ingest.CRASH_LIMIT).
    """
    if not task_id or not args:
        return
    if isinstance(exception, TimeLimitExceeded):
        reason = f"killed at the hard time limit of {exception.args[0] if exception.args else '?'} s"
    elif isinstance(exception, WorkerLostError):
        reason = str(exception)[:200]
    else:
        return
    ingest.stream_run_crashed(
        account_id=int(str(args[0])), stream=Stream.USAGE, task_id=task_id, reason=reason
    )


def due_accounts(*, stream: str, default_minutes: int, now: datetime) -> list[ProviderAccount]:
    """Return active accounts whose ``stream`` is due, and book their next run (inside the caller's transaction).

    Booking ``next_run_at`` at dispatch time keeps an overlapping beat from enqueuing twice.
    """
    field = "usage_interval_minutes" if stream == Stream.USAGE else "balance_interval_minutes"
    accounts = list(
        ProviderAccount.objects.filter(status=AccountStatus.ACTIVE)
        .select_related("organization")
        .order_by("pk")
    )
    states = {
        state.provider_account_id: state
        for state in StreamState.objects.filter(stream=stream, provider_account__in=accounts)
    }
    due = []
    for account in accounts:
        cls = connector_class(account.kind)
        if (stream == Stream.USAGE and not cls.has_usage) or (
            stream == Stream.BALANCE and not cls.has_balance
        ):
            continue
        state = states.get(account.pk)
        if state is not None and state.next_run_at is not None and state.next_run_at > now:
            continue
        minutes = getattr(account, field) or default_minutes
        StreamState.objects.update_or_create(
            provider_account=account,
            stream=stream,
            defaults={"next_run_at": now + timedelta(minutes=minutes)},
        )
        due.append(account)
    return due


@shared_task(acks_late=True, soft_time_limit=50, time_limit=60)
def dispatch_usage_ingests() -> int:
    """Enqueue ``ingest_account_usage`` for every account that is due; returns how many were enqueued."""
    with transaction.atomic():
        due = due_accounts(
            stream=Stream.USAGE, default_minutes=settings.CELERY_USAGE_INTERVAL_MINUTES, now=timezone.now()
        )
        for account in due:
            # Enqueued only if the transaction commits (celery-types lacks delay_on_commit).
            ingest_account_usage.delay_on_commit(account.pk)  # type: ignore[attr-defined]
    return len(due)
