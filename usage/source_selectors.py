"""Reads for the Data sources page: each account's streams, health and recent runs.

Kept apart from ``usage/selectors.py`` (past 1,000 lines, owned by the dashboard pages).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from projects.models import AccountStatus, Organization, ProviderAccount

from .models import IngestRun, RunStatus, StreamState
from .providers.registry import connector_class

RECENT_RUNS = 5


@dataclass
class StreamHealth:
    stream: str
    label: str
    last_success_at: datetime | None
    complete_through: datetime | None
    next_run_at: datetime | None
    last_error: str
    last_error_at: datetime | None
    consecutive_failures: int
    running: bool
    breaker_open: bool = False  # failures in a row have paused the schedule until next_run_at


@dataclass
class SourceStatus:
    account: ProviderAccount
    streams: list[StreamHealth] = field(default_factory=list)
    runs: list[IngestRun] = field(default_factory=list)
    supports: list[str] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        return self.account.status == AccountStatus.NEEDS_ATTENTION

    @property
    def busy(self) -> bool:
        return any(s.running for s in self.streams) or any(r.status == RunStatus.RUNNING for r in self.runs)


def data_sources(*, organization: Organization, account_slug: str | None = None) -> list[SourceStatus]:
    """Return every provider account of the organization with its stream states and latest runs.

    Three queries whatever the number of accounts (accounts, stream states, the newest
    ``RECENT_RUNS`` runs per account via a window function).
    """
    accounts = ProviderAccount.objects.filter(organization=organization).order_by("name")
    if account_slug:
        accounts = accounts.filter(slug=account_slug)
    by_id = {account.pk: SourceStatus(account=account) for account in accounts}
    if not by_id:
        return []
    now = timezone.now()
    for source in by_id.values():
        cls = connector_class(source.account.kind)
        source.supports = [
            name
            for name, flag in (
                ("usage", cls.has_usage),
                ("costs", cls.has_costs),
                ("balance", cls.has_balance),
                ("top-ups", cls.has_topups),
            )
            if flag
        ]
    for state in StreamState.objects.filter(provider_account_id__in=by_id).order_by("stream"):
        by_id[state.provider_account_id].streams.append(
            StreamHealth(
                stream=state.stream,
                label=state.get_stream_display(),
                last_success_at=state.last_success_at,
                complete_through=state.cursor_at,
                next_run_at=state.next_run_at,
                last_error=state.last_error,
                last_error_at=state.last_error_at,
                consecutive_failures=state.consecutive_failures,
                running=bool(state.lease_until and state.lease_until > now),
                breaker_open=state.consecutive_failures >= settings.INGEST_BREAKER_FAILURES
                and bool(state.next_run_at and state.next_run_at > now),
            )
        )
    runs = (
        IngestRun.objects.filter(provider_account_id__in=by_id)
        .annotate(
            rank=Window(RowNumber(), partition_by=[F("provider_account_id")], order_by=F("started_at").desc())
        )
        .filter(rank__lte=RECENT_RUNS)
        .order_by("provider_account_id", "-started_at")
    )
    for run in runs:
        assert run.provider_account_id is not None
        by_id[run.provider_account_id].runs.append(run)
    return list(by_id.values())
