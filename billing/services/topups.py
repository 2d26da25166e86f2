"""Top-up history from gateways that expose it (New API ``/api/user/topup/self``) into billing.TopUp."""

from __future__ import annotations

from projects.models import ProviderAccount
from usage.ingest import Lease, stream_run
from usage.models import IngestRun, Stream
from usage.providers.base import Connector, TopUpReading
from usage.providers.registry import connector_for

from ..models import TopUp, TopUpSource


def topups_store(*, account: ProviderAccount, readings: list[TopUpReading]) -> tuple[int, int, int]:
    """Upsert top-ups by (account, order_ref); returns (new, updated, unchanged).

    A late status change (pending → credited, credited → refunded) updates the row in place.
    """
    existing = {
        topup.order_ref: topup
        for topup in TopUp.objects.filter(
            provider_account=account, order_ref__in=[r.order_ref for r in readings]
        )
    }
    new = updated = unchanged = 0
    for reading in readings:
        values = {
            "amount": reading.amount,
            "currency": account.currency,
            "status": reading.status,
            "created_at": reading.created_at,
            "credited_at": reading.credited_at,
            "payment_method": reading.payment_method,
        }
        topup = existing.get(reading.order_ref)
        if topup is None:
            TopUp.objects.create(
                provider_account=account, order_ref=reading.order_ref, source=TopUpSource.PROVIDER, **values
            )
            new += 1
        elif all(getattr(topup, name) == value for name, value in values.items()):
            unchanged += 1
        else:
            for name, value in values.items():
                setattr(topup, name, value)
            topup.save(update_fields=list(values))
            updated += 1
    return new, updated, unchanged


def topups_sync(*, account: ProviderAccount, connector: Connector | None = None) -> IngestRun:
    """Read the gateway's top-up history into TopUp rows and return the run (skipped for other kinds)."""

    def work(lease: Lease) -> None:
        conn = connector or connector_for(account)
        try:
            readings = conn.fetch_topups() if conn.has_topups else []
        finally:
            if connector is None:
                conn.close()
        new, updated, unchanged = topups_store(account=account, readings=readings)
        lease.run.rows_new, lease.run.rows_updated, lease.run.rows_unchanged = new, updated, unchanged

    return stream_run(account=account, stream=Stream.TOPUPS, work=work)
