"""Balance polling: read each account's balance through its connector into BalanceSnapshot rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from projects.models import ProviderAccount
from usage.ingest import Lease, stream_run
from usage.models import IngestRun, Stream
from usage.providers.base import BalanceReading, Connector
from usage.providers.registry import connector_for

from ..models import BalanceSnapshot, SnapshotSource


def balance_snapshots_store(
    *, account: ProviderAccount, readings: list[BalanceReading], taken_at: datetime | None = None
) -> list[BalanceSnapshot]:
    """Store one snapshot per reading (one per currency) at ``taken_at`` (default now, whole seconds).

    Idempotent per (account, instant, currency): a second poll in the same second updates in place.
    """
    moment = taken_at or timezone.now().replace(microsecond=0)
    snapshots = []
    for reading in readings:
        defaults: dict[str, Any] = {
            "remaining": reading.remaining,
            "used": reading.used,
            "granted": reading.granted,
            "topped_up": reading.topped_up,
            "total_credits": reading.total_credits,
            "raw_quota": reading.raw_quota,
            "raw_used_quota": reading.raw_used_quota,
            "request_count": reading.request_count,
            "is_available": reading.is_available,
        }
        snapshot, _ = BalanceSnapshot.objects.update_or_create(
            provider_account=account,
            taken_at=moment,
            currency=reading.currency,
            source=SnapshotSource.PROVIDER,
            defaults=defaults,
        )
        snapshots.append(snapshot)
    return snapshots


def balance_poll_run(*, account: ProviderAccount, connector: Connector | None = None) -> IngestRun:
    """Poll the balance under the balance stream's lease and return the run (errors recorded, not raised)."""
    stored: list[BalanceSnapshot] = []

    def work(lease: Lease) -> None:
        conn = connector or connector_for(account)
        try:
            readings = conn.fetch_balance() if conn.has_balance else []
        finally:
            if connector is None:
                conn.close()
        lease.run.pages = 1 if conn.has_balance else 0
        stored.extend(balance_snapshots_store(account=account, readings=readings))
        lease.run.rows_new = len(stored)
        lease.advance_cursor(timezone.now())

    run = stream_run(account=account, stream=Stream.BALANCE, work=work)
    run.snapshots = stored  # type: ignore[attr-defined]
    return run


def balance_poll(*, account: ProviderAccount, connector: Connector | None = None) -> list[BalanceSnapshot]:
    """Return the snapshots stored by one balance poll; empty when the provider has no balance
    endpoint (OpenAI, Anthropic), the stream is busy, or the call failed (see the IngestRun)."""
    run = balance_poll_run(account=account, connector=connector)
    return list(run.snapshots)  # type: ignore[attr-defined]
