"""Connector ingestion: leases, windows, cursors, run bookkeeping and the billed-cost adjustment.

Every stream run (usage here; balances and top-ups in billing.services) goes through ``stream_run``:
it records an ``IngestRun``, takes the stream's lease with a compare-and-set UPDATE, classifies
provider errors (401/403 → the account needs attention; 429/5xx/timeouts → transient, retried by
the task) and stores only redacted messages.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time as clock
import uuid
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, router, transaction
from django.db.models import Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from projects.models import AccountStatus, ApiKey, ProviderAccount

from .models import CostSource, IngestRun, RunStatus, Stream, StreamState, UsageRecord
from .providers.base import Connector, CostLine, UsageRow
from .providers.http import AuthError, ProviderError, TransientProviderError, redact
from .providers.registry import connector_class, connector_for
from .services import UpsertResult, local_day, rollup_refresh_days, usage_rows_upsert

logger = logging.getLogger("usage.ingest")

# Longer than any one run (the task's hard time limit), so a live holder never loses its lease,
# short enough that a killed worker's lease lapses before the next few beats.
LEASE_DURATION = timedelta(minutes=15)
INITIAL_BACKFILL = timedelta(days=getattr(settings, "QB_INITIAL_BACKFILL_DAYS", 30))

ProgressCallback = Callable[[int, int, int], None]

# Pauses (s) between tries of a run's closing writes after the database dropped the connection: a
# restart (`pg_ctl restart -m fast`) or a failover is back well within these ~15 s.
DB_RECONNECT_WAITS = (0.5, 1.0, 2.0, 4.0, 8.0)


class ErrorKind:
    AUTH = "auth"
    TRANSIENT = "transient"
    PROVIDER = "provider"
    INTERNAL = "internal"
    LEASE = "lease"
    ABANDONED = "abandoned"
    CRASHED = "crashed"
    POISON = "poison"


# A stream whose last CRASH_LIMIT runs all died with their worker process (os._exit, the OOM killer,
# a segfault in a parser) is not run again: the next run fails at once and pauses the account, so a
# poison payload costs at most CRASH_LIMIT pool children and never loops on redelivery.
CRASH_LIMIT = 3


def _reconnecting(write: Callable[[], None]) -> None:
    """Run ``write``; if the database connection is gone, drop it and try again on a new one.

    Why: a run cut off by a database restart must still release its lease and record its failure,
    or the task's retry would find the lease taken and skip for LEASE_DURATION. Raises the last
    error when the database stays away (the task's autoretry on OperationalError takes over).
    """
    alias = router.db_for_write(StreamState)
    for wait in (*DB_RECONNECT_WAITS, None):
        try:
            write()
            return
        except (OperationalError, InterfaceError):
            if wait is None or connections[alias].in_atomic_block:
                raise
            connections[alias].close()
            clock.sleep(wait)


class LeaseLost(Exception):
    """Another worker took the stream's lease (ours lapsed): stop without writing."""


@dataclass
class Lease:
    state: StreamState
    owner: str
    account: ProviderAccount
    run: IngestRun
    days: set[date] = field(default_factory=set)

    def advance_cursor(self, through: datetime) -> None:
        """Move the cursor forward (never back) inside the caller's transaction; raise if the lease is gone."""
        current = self.state.cursor_at
        target = through if current is None or through > current else current
        updated = StreamState.objects.filter(pk=self.state.pk, lease_owner=self.owner).update(
            cursor_at=target
        )
        if updated != 1:
            raise LeaseLost("lease lost while writing")
        self.state.cursor_at = target


def stream_state(account: ProviderAccount, stream: str) -> StreamState:
    state, _ = StreamState.objects.get_or_create(provider_account=account, stream=stream)
    return state


def execution_owner(task_id: str) -> str:
    """Return a lease owner for one execution of task ``task_id``: ``<task id>:<pid>@<host tag>``.

    Unique per execution, so a copy of the message that Redis redelivers while this one still runs
    (visibility timeout) finds the lease taken. The pid and host let a copy on the same host tell a
    dead holder from a live one (see lease_acquire).
    """
    return f"{task_id}:{os.getpid()}@{_HOST_TAG}"


_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _dead_sibling(state: StreamState, owner: str) -> str | None:
    """The current holder's name, when it is an execution of the same task on this host whose
    process is gone (a pool child killed mid-run whose message Celery requeued); else None."""
    holder = StreamState.objects.filter(pk=state.pk).values_list("lease_owner", flat=True).first() or ""
    task, _, where = owner.partition(":")
    held_task, _, held_where = holder.partition(":")
    pid, _, host = held_where.partition("@")
    if not task or held_task != task or host != _HOST_TAG or not pid.isdigit() or holder == owner:
        return None
    if where.partition("@")[2] != _HOST_TAG:
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return holder
    except PermissionError:
        return None  # alive, another user's
    return None


def lease_acquire(state: StreamState, owner: str, *, now: datetime | None = None) -> bool:
    """Take the stream's lease if it is free, lapsed or already ``owner``'s; True when this caller holds it.

    Compare-and-set: of several workers racing, exactly one UPDATE matches the row. Owners are
    unique per execution (execution_owner), so a redelivered copy of a message skips while the
    first execution runs. One exception: a holder that is the same task on this host whose process
    is gone (Celery requeued the message of a pool child that died) is taken over at once rather
    than after LEASE_DURATION.
    """
    now = now or timezone.now()
    takeable = Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner)
    dead = _dead_sibling(state, owner)
    if dead is not None:
        takeable |= Q(lease_owner=dead)
    taken = (
        StreamState.objects.filter(pk=state.pk)
        .filter(takeable)
        .update(lease_owner=owner, lease_until=now + LEASE_DURATION, last_run_at=now)
    )
    return taken == 1


def lease_release(state: StreamState, owner: str) -> None:
    StreamState.objects.filter(pk=state.pk, lease_owner=owner).update(lease_owner="", lease_until=None)


def stream_run(
    *,
    account: ProviderAccount,
    stream: str,
    work: Callable[[Lease], None],
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    owner: str | None = None,
) -> IngestRun:
    """Run ``work`` under the stream's lease and return the finished IngestRun (never raises ProviderError).

    The run ends "skipped" when another worker holds the lease, "failed" with a redacted error and
    an ``error_kind`` the task uses to decide on a retry, or "success". ``owner`` names the lease
    holder (tasks pass their task id, see lease_acquire); by default a fresh id.
    """
    secret = account.get_credential()
    run = IngestRun.objects.create(
        provider_account=account,
        organization_id=account.organization_id,
        stream=stream,
        window_start=window_start,
        window_end=window_end,
    )
    state = stream_state(account, stream)
    owner = owner or uuid.uuid4().hex
    if not lease_acquire(state, owner):
        run.status = RunStatus.SKIPPED
        run.error = "skipped: another run of this stream is in progress"
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        return run
    state.refresh_from_db()
    # Holding the lease means no earlier run of this stream is alive: one still "running" died with
    # its worker (SIGKILL, OOM, lost host). Close it so the Data sources page and run log say so.
    IngestRun.objects.filter(
        provider_account=account, stream=stream, status=RunStatus.RUNNING, pk__lt=run.pk
    ).update(
        status=RunStatus.FAILED,
        error_kind=ErrorKind.ABANDONED,
        error="abandoned: the worker stopped mid-run; this stream was re-run",
        finished_at=timezone.now(),
    )
    lease = Lease(state=state, owner=owner, account=account, run=run)
    kind = ""
    message = ""
    try:
        if _crashed_too_often(account, stream, run):
            kind = ErrorKind.POISON
            message = (
                f"stopped: the worker process died in each of the last {CRASH_LIMIT} runs of this "
                "stream; the account is paused until someone checks it and runs it again"
            )
        else:
            work(lease)
    except AuthError as exc:
        kind, message = ErrorKind.AUTH, redact(str(exc), secret)
    except TransientProviderError as exc:
        kind, message = ErrorKind.TRANSIENT, redact(str(exc), secret)
    except ProviderError as exc:
        kind, message = ErrorKind.PROVIDER, redact(str(exc), secret)
    except LeaseLost as exc:
        kind, message = ErrorKind.LEASE, str(exc)
    except (OperationalError, InterfaceError) as exc:
        # The database went away mid-run (restart, failover): what committed stays, the chunk in
        # flight rolled back; retrying later is the cure, as for a provider 5xx.
        kind, message = ErrorKind.TRANSIENT, f"database connection lost ({type(exc).__name__}); retried"
    except Exception as exc:
        # Unexpected: keep the type only; the traceback could quote a request.
        kind, message = ErrorKind.INTERNAL, f"internal error: {type(exc).__name__}"
        logger.error("ingest of account %s stream %s crashed: %s", account.pk, stream, type(exc).__name__)
    finally:
        _reconnecting(lambda: lease_release(state, owner))
    _reconnecting(
        lambda: _finish(run=run, state=state, account=account, stream=stream, kind=kind, message=message)
    )
    return run


def _finish(
    *, run: IngestRun, state: StreamState, account: ProviderAccount, stream: str, kind: str, message: str
) -> None:
    now = timezone.now()
    run.finished_at = now
    run.error_kind = kind
    if kind:
        run.status = RunStatus.FAILED
        run.error = message[:500]
        failures = state.consecutive_failures + 1
        changes: dict[str, Any] = {
            "last_error": run.error,
            "last_error_at": now,
            "consecutive_failures": failures,
        }
        pause = breaker_pause_minutes(account=account, stream=stream, failures=failures)
        if kind == ErrorKind.TRANSIENT and pause:
            # The breaker is open: the schedule leaves the provider alone until the pause is over.
            changes["next_run_at"] = now + timedelta(minutes=pause)
            run.error = f"{run.error[:400]} (circuit open after {failures} failures in a row: next try in {pause} min)"
        StreamState.objects.filter(pk=state.pk).update(**changes)
        state.consecutive_failures = failures
        logger.warning("ingest of account %s stream %s failed (%s): %s", account.pk, stream, kind, run.error)
        if kind in {ErrorKind.AUTH, ErrorKind.POISON}:
            # Stop polling this account until someone fixes the credential (or looks at what kills
            # the worker); the page says why. "Run now" still runs it, and a success resumes it.
            ProviderAccount.objects.filter(pk=account.pk).update(
                status=AccountStatus.NEEDS_ATTENTION, status_message=f"{stream}: {run.error}"[:500]
            )
            account.status = AccountStatus.NEEDS_ATTENTION
    else:
        run.status = RunStatus.SUCCESS
        StreamState.objects.filter(pk=state.pk).update(
            last_success_at=now, last_error="", consecutive_failures=0
        )
        if account.status == AccountStatus.NEEDS_ATTENTION:
            ProviderAccount.objects.filter(pk=account.pk).update(
                status=AccountStatus.ACTIVE, status_message=""
            )
            account.status = AccountStatus.ACTIVE
    run.save()


def breaker_pause_minutes(*, account: ProviderAccount, stream: str, failures: int) -> int:
    """Return how long the schedule should leave a stream alone after ``failures`` in a row (0: closed).

    Open from INGEST_BREAKER_FAILURES on: twice the stream's interval, doubling per further failure,
    capped at INGEST_BREAKER_MAX_MINUTES.
    """
    beyond = failures - settings.INGEST_BREAKER_FAILURES
    if beyond < 0:
        return 0
    if stream == Stream.USAGE:
        interval = account.usage_interval_minutes or settings.CELERY_USAGE_INTERVAL_MINUTES
    else:
        interval = account.balance_interval_minutes or settings.CELERY_BALANCE_INTERVAL_MINUTES
    return int(min(interval * 2 ** min(beyond + 1, 20), settings.INGEST_BREAKER_MAX_MINUTES))


def breaker_is_open(*, account: ProviderAccount, stream: str) -> bool:
    """True when the stream's failures in a row have opened its circuit breaker."""
    failures = (
        StreamState.objects.filter(provider_account=account, stream=stream)
        .values_list("consecutive_failures", flat=True)
        .first()
    )
    return bool(failures and breaker_pause_minutes(account=account, stream=stream, failures=failures))


def _crashed_too_often(account: ProviderAccount, stream: str, run: IngestRun) -> bool:
    """True when the stream's last CRASH_LIMIT runs before ``run`` all died with their worker."""
    recent = list(
        IngestRun.objects.filter(provider_account=account, stream=stream, pk__lt=run.pk)
        .exclude(status=RunStatus.SKIPPED)
        .order_by("-pk")
        .values_list("error_kind", flat=True)[:CRASH_LIMIT]
    )
    return len(recent) == CRASH_LIMIT and all(
        kind in {ErrorKind.CRASHED, ErrorKind.ABANDONED} for kind in recent
    )


def stream_run_crashed(*, account_id: int, stream: str, task_id: str, reason: str) -> IngestRun | None:
    """Close the run whose worker process died holding a lease taken by task ``task_id``; returns it, or None.

    Called by the worker's main process when a pool child died mid-task (WorkerLostError): the run
    is failed "crashed" with ``reason`` and the lease freed at once instead of after LEASE_DURATION.
    Lease owners are ``<task id>:<execution>`` (usage.tasks). None when that task held no lease (it
    died before taking it, or after releasing it).
    """
    with transaction.atomic():
        state = (
            StreamState.objects.select_for_update()
            .filter(provider_account_id=account_id, stream=stream)
            .filter(Q(lease_owner=task_id) | Q(lease_owner__startswith=f"{task_id}:"))
            .first()
        )
        if state is None:
            return None
        run = (
            IngestRun.objects.filter(provider_account_id=account_id, stream=stream, status=RunStatus.RUNNING)
            .order_by("-pk")
            .first()
        )
        now = timezone.now()
        if run is not None:
            run.status, run.error_kind, run.finished_at = RunStatus.FAILED, ErrorKind.CRASHED, now
            run.error = f"crashed: the worker process died running this ingest ({reason})"[:500]
            run.save(update_fields=["status", "error_kind", "error", "finished_at"])
        StreamState.objects.filter(pk=state.pk).update(
            lease_owner="",
            lease_until=None,
            last_error=(run.error if run else reason)[:500],
            last_error_at=now,
            consecutive_failures=state.consecutive_failures + 1,
        )
    logger.warning("ingest of account %s stream %s crashed: %s", account_id, stream, reason)
    return run


def _chunks(start: datetime, end: datetime, size: timedelta) -> Iterator[tuple[datetime, datetime]]:
    cursor = start
    while cursor < end:
        upper = min(cursor + size, end)
        yield cursor, upper
        cursor = upper


def _whole_seconds(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def usage_ingest_window(
    *,
    account: ProviderAccount,
    start: datetime,
    end: datetime,
    refresh_rollups: bool = True,
    connector: Connector | None = None,
    progress: ProgressCallback | None = None,
    lease_owner: str | None = None,
) -> IngestRun:
    """Fetch and store the account's usage for [start, end) and return the run.

    Steps, per chunk of the window (oldest first, ``connector.chunk`` long):
    1. fetch every page of the chunk (a closed time window, so new rows cannot shift pages);
    2. in one transaction: upsert the rows, recompute the billed-cost adjustments of the UTC days
       the chunk touches (OpenAI, Anthropic), advance the cursor, refresh the touched rollup days.
    A crash loses at most the chunk in flight; re-running re-reads it without double counting.
    """
    start, end = _whole_seconds(start), _whole_seconds(end)
    if connector_class(account.kind).has_costs:
        # Cost reports are per whole UTC day: read that day's usage from its start too, or the
        # day's billed cost would be set against part of its tokens (a mid-day backfill start).
        start = start.replace(hour=0, minute=0, second=0)
    own = connector is None

    def work(lease: Lease) -> None:
        nonlocal connector
        if connector is None:
            connector = connector_for(account)
        try:
            _ingest_chunks(lease, connector, start, end, refresh_rollups, progress)
        finally:
            if own:
                connector.close()

    return stream_run(
        account=account, stream=Stream.USAGE, work=work, window_start=start, window_end=end, owner=lease_owner
    )


@dataclass
class _FetchedChunk:
    start: datetime
    end: datetime
    rows: list[UsageRow]
    pages: int
    costs: list[CostLine]


def _fetch_chunk(
    connector: Connector, start: datetime, end: datetime, cancelled: threading.Event
) -> _FetchedChunk | None:
    """Read every page of one chunk (and its cost report); None if cancelled between pages."""
    rows: list[UsageRow] = []
    pages = 0
    for page in connector.fetch_usage(start, end):
        if cancelled.is_set():
            return None
        pages += 1
        rows.extend(page.rows)
    costs = connector.fetch_costs(start, end) if connector.has_costs else []
    return _FetchedChunk(start, end, rows, pages, costs)


def _read_ahead(
    connector: Connector, chunks: list[tuple[datetime, datetime]]
) -> Generator[_FetchedChunk, None, None]:
    """Yield each chunk's rows in order while the next chunk is read in a background thread.

    Why: reading waits on the provider and writing on the database; one chunk of look-ahead
    overlaps the two. The reader only talks HTTP (connectors never touch the database). A read
    error is raised here, in chunk order, after every earlier chunk was yielded and written.
    If the caller stops early, the reader is told to stop after its current page.
    """
    if not chunks:
        return
    cancelled = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-read") as reader:
        try:
            pending = reader.submit(_fetch_chunk, connector, *chunks[0], cancelled)
            for upcoming in [*chunks[1:], None]:
                fetched = pending.result()
                assert fetched is not None  # only a cancelled read returns None
                if upcoming is not None:
                    pending = reader.submit(_fetch_chunk, connector, *upcoming, cancelled)
                yield fetched
        finally:
            cancelled.set()


def _ingest_chunks(
    lease: Lease,
    connector: Connector,
    start: datetime,
    end: datetime,
    refresh_rollups: bool,
    progress: ProgressCallback | None,
) -> None:
    chunks = list(_chunks(start, end, connector.chunk)) if connector.has_usage else []
    total_rows = 0
    # closing(): an error while writing stops the reader now, not when the traceback is freed.
    with closing(_read_ahead(connector, chunks)) as fetched_chunks:
        for index, fetched in enumerate(fetched_chunks, 1):
            _store_chunk(lease, connector, fetched, refresh_rollups)
            total_rows += len(fetched.rows)
            if progress:
                progress(index, len(chunks), total_rows)
    if not chunks or not connector.has_usage:
        lease.advance_cursor(end)


def _store_chunk(lease: Lease, connector: Connector, fetched: _FetchedChunk, refresh_rollups: bool) -> None:
    """Write one fetched chunk, its cost adjustments and the cursor in one transaction."""
    run, account = lease.run, lease.account
    organization = account.organization
    run.pages += fetched.pages
    rows = fetched.rows
    with transaction.atomic():
        result = usage_rows_upsert(
            organization=organization, rows=rows, account=account, refresh_rollups=False
        )
        if connector.has_costs:
            adjustments = cost_adjustments(account=account, costs=fetched.costs)
            result.add(
                usage_rows_upsert(
                    organization=organization, rows=adjustments, account=account, refresh_rollups=False
                )
            )
        lease.advance_cursor(fetched.end)
        if refresh_rollups and result.days:
            rollup_refresh_days(organization=organization, days=result.days)
        run.rows_new += result.new
        run.rows_updated += result.updated
        run.rows_unchanged += result.unchanged
        run.save(update_fields=["pages", "rows_new", "rows_updated", "rows_unchanged"])
    lease.days |= result.days


def usage_ingest_account(
    *,
    account: ProviderAccount,
    now: datetime | None = None,
    refresh_rollups: bool = True,
    lease_owner: str | None = None,
) -> IngestRun:
    """Ingest from the stream's cursor minus the connector's overlap up to now and return the run.

    A first run reads ``QB_INITIAL_BACKFILL_DAYS`` (30) days. The overlap (6 h for gateways,
    48 h for OpenAI, Anthropic and OpenRouter) re-reads late and revised provider data.
    """
    now = now or timezone.now()
    overlap = connector_class(account.kind).overlap
    cursor = stream_state(account, Stream.USAGE).cursor_at
    start = (min(cursor, now) - overlap) if cursor else now - INITIAL_BACKFILL
    return usage_ingest_window(
        account=account, start=start, end=now, refresh_rollups=refresh_rollups, lease_owner=lease_owner
    )


def _adjustment_at(day: date) -> datetime:
    # Noon UTC falls on the same calendar date in every zone from UTC-11 to UTC+11, so the
    # adjustment lands on the organization's local day that matches the provider's UTC day.
    return datetime.combine(day, time(12), tzinfo=UTC)


def cost_adjustments(*, account: ProviderAccount, costs: list[CostLine]) -> list[UsageRow]:
    """Return one adjustment row per (UTC day, model) so that stored cost = the provider's billed cost.

    Why: usage buckets carry tokens but no money, so they are priced from ModelPrice (an estimate
    per bucket, which drill-downs by key and hour need); the cost report is the billed truth but
    only per day and model. Storing billed minus estimated as a zero-request row keyed
    ``adj:<day>:<model>`` makes every sum equal the bill without double counting, and re-running
    it after either side is re-read updates the same row in place. Usage models such as
    ``gpt-4o-2024-08-06`` count toward a cost line named ``gpt-4o``.
    """
    if not costs:
        return []
    days = sorted({line.day for line in costs})
    start = datetime.combine(days[0], time.min, tzinfo=UTC)
    end = datetime.combine(days[-1] + timedelta(days=1), time.min, tzinfo=UTC)
    estimated_rows = (
        UsageRecord.objects.filter(
            provider_account=account,
            occurred_at__gte=start,
            occurred_at__lt=end,
            cost_source__in=[CostSource.PRICE, CostSource.UNPRICED],
        )
        .annotate(utc_day=TruncDate("occurred_at", tzinfo=UTC))
        .values("utc_day", "model", "currency")
        .annotate(total=Sum("cost"))
        .order_by()
    )
    billed_models: dict[date, list[str]] = defaultdict(list)
    for line in costs:
        billed_models[line.day].append(line.model)
    estimated: dict[tuple[date, str, str], Decimal] = defaultdict(Decimal)
    for values in estimated_rows:
        day, model = values["utc_day"], values["model"]
        target = _billed_model_for(model, billed_models.get(day, []))
        if target is not None:
            estimated[(day, target, values["currency"])] += values["total"] or Decimal(0)
    return [
        UsageRow(
            occurred_at=_adjustment_at(line.day),
            model=line.model,
            natural_key=f"adj:{line.day.isoformat()}:{line.model}"
            + ("" if line.currency == "USD" else f":{line.currency}"),
            requests=0,
            bucket_seconds=86400,
            cost=line.amount - estimated.get((line.day, line.model, line.currency), Decimal(0)),
            currency=line.currency,
        )
        for line in costs
    ]


def _billed_model_for(model: str, billed: list[str]) -> str | None:
    if model in billed:
        return model
    candidates = [name for name in billed if model.startswith(name + "-")]
    return max(candidates, key=len) if candidates else None


def keys_sync(*, account: ProviderAccount, connector: Connector | None = None) -> int:
    """Create or rename the account's ApiKeys from the provider's key listing; returns keys created.

    Only providers that list keys (OpenAI) do anything; gateways' keys appear from their logs.
    Project assignment stays the admin's: a new key starts unassigned.
    """
    own = connector is None
    connector = connector or connector_for(account)
    try:
        listed = connector.list_keys()
    finally:
        if own:
            connector.close()
    created = 0
    existing = {key.external_id: key for key in ApiKey.objects.filter(provider_account=account)}
    for info in listed:
        key = existing.get(info.external_id)
        if key is None:
            ApiKey.objects.create(
                organization_id=account.organization_id,
                provider_account=account,
                external_id=info.external_id,
                name=info.name,
                redacted_hint=info.redacted_hint,
            )
            created += 1
        elif (key.name, key.redacted_hint) != (info.name, info.redacted_hint):
            key.name, key.redacted_hint = info.name, info.redacted_hint
            key.save(update_fields=["name", "redacted_hint"])
    return created


def ingest_account_summary(run: IngestRun) -> str:
    """Return a one-line description of a run for commands and logs (no secrets: the error is redacted)."""
    text = f"{run.status}: {run.pages} pages, {run.rows_new} new, {run.rows_updated} updated, {run.rows_unchanged} unchanged"
    return f"{text} — {run.error}" if run.error else text


__all__ = [
    "LEASE_DURATION",
    "ErrorKind",
    "UpsertResult",
    "cost_adjustments",
    "keys_sync",
    "lease_acquire",
    "lease_release",
    "local_day",
    "stream_run",
    "stream_run_crashed",
    "stream_state",
    "usage_ingest_account",
    "usage_ingest_window",
]
