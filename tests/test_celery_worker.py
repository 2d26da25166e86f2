"""A real Celery worker process runs a task that writes to the database.

The broker is CELERY_TEST_BROKER_URL (CI sets redis://127.0.0.1:6379/15) or, without it, the
embedded file-system transport the demo uses. A private queue keeps a running demo worker from
taking the message.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db.models import Sum

from config.celery import app as celery_app
from tests import factories
from tests.celery_worker import broker_url, private_queue, start_worker
from usage.models import UsageDaily, UsageRecord
from usage.services import usage_rows_upsert
from usage.tasks import rebuild_rollups


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_rebuilds_rollups_in_the_database() -> None:
    org = factories.make_org("Worker Co", timezone="Europe/Berlin")
    rows = [
        factories.usage_row(
            datetime(2026, 10, day, hour, tzinfo=UTC), cost=f"0.{day}{hour}", input_tokens=100 * hour
        )
        for day in (1, 2, 3)
        for hour in (1, 12, 23)
    ]
    usage_rows_upsert(organization=org, rows=rows, refresh_rollups=False)
    assert not UsageDaily.objects.filter(organization=org).exists()

    queue = private_queue()
    worker = start_worker(queue)
    try:
        with celery_app.connection_for_write(broker_url()) as conn:
            rebuild_rollups.apply_async(args=[org.pk], queue=queue, connection=conn)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not UsageDaily.objects.filter(organization=org).exists():
            if worker.poll() is not None:
                break
            time.sleep(0.25)
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    assert UsageDaily.objects.filter(organization=org).exists(), f"worker did not write:\n{output[-3000:]}"
    # Wait for the rebuild's transaction to finish writing every day before comparing.
    raw = UsageRecord.objects.filter(organization=org).aggregate(cost=Sum("cost"), tokens=Sum("input_tokens"))
    rolled = UsageDaily.objects.filter(organization=org).aggregate(
        cost=Sum("cost"), tokens=Sum("input_tokens")
    )
    assert rolled == raw
    assert raw["cost"] == sum((row.cost for row in rows), Decimal(0))
    assert "rebuild_rollups" in output and "succeeded" in output
