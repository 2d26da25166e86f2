"""Alert engine: thresholds once per period (also under a race), forecasts, low balance, anomalies,
stale data; e-mail through locmem and signed webhooks to a real loopback receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import time_machine
from celery import Task
from django.core import mail
from django.core.management import call_command
from django.db import connection, transaction

from billing.models import (
    AlertDelivery,
    AlertEvent,
    AlertKind,
    AlertPolicy,
    BalanceSnapshot,
    Budget,
    DeliveryStatus,
)
from billing.services.alerts import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    AlertDraft,
    alert_delivery_send,
    alert_event_record,
    alert_policy_for,
    alerts_evaluate,
)
from billing.tasks import deliver_alert, delivery_backoff, evaluate_alerts
from projects import encryption
from tests import factories
from tests.billing.builders import budget, spend
from tests.conftest import Tenancy
from usage.models import StreamState

# The last day of November: no days left, so the forecast equals the actual and only thresholds fire.
MONTH_END = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
MID_MONTH = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def _kinds(events: list[AlertEvent]) -> list[tuple[str, int]]:
    return sorted((e.kind, e.threshold) for e in events)


@pytest.mark.django_db
@time_machine.travel(MONTH_END, tick=False)
def test_each_crossed_threshold_is_raised_once_per_month(tenancy: Tenancy) -> None:
    b = budget(tenancy.org, "100", project=tenancy.project, name="chat", recipients="cfo@example.com")
    spend(tenancy.org, date(2026, 11, 3), "85", project=tenancy.project)

    first = alerts_evaluate(organization=tenancy.org)
    assert _kinds(first) == [(AlertKind.BUDGET_THRESHOLD, 50), (AlertKind.BUDGET_THRESHOLD, 80)]
    assert {e.period for e in first} == {"2026-11"}
    assert "Spent $85.00 of $100.00 (85.0%) in November 2026" in first[1].message

    assert alerts_evaluate(organization=tenancy.org) == []  # a re-run adds nothing

    spend(tenancy.org, date(2026, 11, 29), "15", project=tenancy.project)  # now exactly 100
    assert _kinds(alerts_evaluate(organization=tenancy.org)) == [(AlertKind.BUDGET_THRESHOLD, 100)]
    assert AlertEvent.objects.filter(budget=b).count() == 3


@pytest.mark.django_db
def test_thresholds_fire_again_in_the_next_month(tenancy: Tenancy) -> None:
    budget(tenancy.org, "100", project=tenancy.project)
    spend(tenancy.org, date(2026, 11, 3), "60", project=tenancy.project)
    spend(tenancy.org, date(2026, 12, 3), "60", project=tenancy.project)
    with time_machine.travel(MONTH_END, tick=False):
        assert len(alerts_evaluate(organization=tenancy.org)) == 1
    with time_machine.travel(datetime(2026, 12, 31, 12, tzinfo=UTC), tick=False):
        december = alerts_evaluate(organization=tenancy.org)
    assert [(e.period, e.threshold) for e in december] == [("2026-12", 50)]


@pytest.mark.django_db
@time_machine.travel(MID_MONTH, tick=False)
def test_forecast_to_exceed_is_raised_before_the_budget_is_spent(tenancy: Tenancy) -> None:
    budget(tenancy.org, "200", project=tenancy.project, name="chat", thresholds=[90])
    for day in range(13, 20):
        spend(tenancy.org, date(2026, 11, day), "10", project=tenancy.project)  # 70 so far, 10 a day
    # 70 + 10 x 10 days left = 170: within budget.
    assert alerts_evaluate(organization=tenancy.org) == []
    spend(tenancy.org, date(2026, 11, 20), "40", project=tenancy.project)  # 110 + 100 = 210 > 200
    events = alerts_evaluate(organization=tenancy.org)
    assert _kinds(events) == [(AlertKind.BUDGET_FORECAST, 0)]
    assert "Forecast $210.00 against $200.00" in events[0].message


@pytest.mark.django_db
@time_machine.travel(MID_MONTH, tick=False)
def test_daily_budget_thresholds_are_once_per_day(tenancy: Tenancy) -> None:
    budget(tenancy.org, "1000", project=tenancy.project, daily_amount=D("20"), thresholds=[100])
    spend(tenancy.org, date(2026, 11, 20), "25", project=tenancy.project)
    events = alerts_evaluate(organization=tenancy.org)
    assert [(e.kind, e.period) for e in events] == [(AlertKind.BUDGET_DAILY_THRESHOLD, "2026-11-20")]
    assert alerts_evaluate(organization=tenancy.org) == []


@pytest.mark.django_db
@time_machine.travel(MONTH_END, tick=False)
def test_a_model_scoped_budget_counts_only_its_model(tenancy: Tenancy) -> None:
    budget(tenancy.org, "100", project=tenancy.project, model="gpt-4o", thresholds=[50])
    spend(tenancy.org, date(2026, 11, 3), "90", project=tenancy.project, model="claude-sonnet-4")
    assert alerts_evaluate(organization=tenancy.org) == []


@pytest.mark.django_db
@time_machine.travel(MONTH_END, tick=False)
def test_alert_email_goes_to_chosen_members_and_extra_recipients_once(tenancy: Tenancy) -> None:
    tenancy.owner.email = "owner@acme.test"
    tenancy.owner.save()
    b = budget(
        tenancy.org, "100", project=tenancy.project, name="chat", thresholds=[80], recipients="cfo@acme.test"
    )
    b.notify_members.add(tenancy.owner)
    spend(tenancy.org, date(2026, 11, 3), "85", project=tenancy.project)

    [event] = alerts_evaluate(organization=tenancy.org)
    [delivery] = event.deliveries.all()
    assert alert_delivery_send(delivery_id=delivery.pk) == DeliveryStatus.SENT
    assert alert_delivery_send(delivery_id=delivery.pk) == DeliveryStatus.SENT  # redelivered task: no resend
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["owner@acme.test", "cfo@acme.test"]
    assert message.subject == "[Quotaboard] chat reached 80% of its November budget"
    assert "Spent $85.00 of $100.00" in message.body
    assert "/o/acme/alerts/" in message.body


@pytest.mark.django_db
@time_machine.travel(MONTH_END, tick=False)
def test_without_chosen_recipients_the_project_owner_and_admins_are_told(tenancy: Tenancy) -> None:
    tenancy.owner.email = "owner@acme.test"
    tenancy.owner.save()
    tenancy.admin.email = "admin@acme.test"
    tenancy.admin.save()
    budget(tenancy.org, "100", project=tenancy.project, thresholds=[50])
    spend(tenancy.org, date(2026, 11, 3), "60", project=tenancy.project)
    [event] = alerts_evaluate(organization=tenancy.org)
    assert event.deliveries.get().target == "owner@acme.test,admin@acme.test"


def test_the_evaluate_task_enqueues_deliveries_only_after_commit(
    tenancy: Tenancy, django_capture_on_commit_callbacks: Any
) -> None:
    tenancy.admin.email = "admin@acme.test"
    tenancy.admin.save()
    budget(tenancy.org, "100", project=tenancy.project, thresholds=[50])
    spend(tenancy.org, date(2026, 11, 3), "60", project=tenancy.project)
    with time_machine.travel(MONTH_END, tick=False), django_capture_on_commit_callbacks() as callbacks:
        assert evaluate_alerts.apply(args=[tenancy.org.pk]).get() == 1
    assert len(callbacks) == 1
    assert len(mail.outbox) == 0  # nothing sent inside the transaction
    delivery = AlertDelivery.objects.get()
    deliver_alert.apply(args=[delivery.pk])
    assert len(mail.outbox) == 1


# --- Dedupe under concurrency -------------------------------------------------------------------------


def _draft(b: Any, threshold: int = 80) -> AlertDraft:
    return AlertDraft(
        kind=AlertKind.BUDGET_THRESHOLD,
        period="2026-11",
        budget=b,
        threshold=threshold,
        title="t",
        message="m",
    )


@pytest.mark.django_db
def test_a_redelivered_evaluation_records_the_same_alert_only_once(tenancy: Tenancy) -> None:
    b = budget(
        tenancy.org, "100", project=tenancy.project, recipients="x@acme.test", webhook_url="https://h.test/"
    )
    policy = alert_policy_for(tenancy.org)
    assert alert_event_record(organization=tenancy.org, draft=_draft(b), policy=policy) is not None
    # The redelivered copy skips the pre-check and hits the unique constraint: it loses quietly.
    assert alert_event_record(organization=tenancy.org, draft=_draft(b), policy=policy) is None
    assert AlertEvent.objects.count() == 1
    assert AlertDelivery.objects.count() == 2  # one e-mail, one webhook


def _race(worker: Any, n: int = 2) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = worker()
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_two_workers_recording_the_same_crossing_at_once_produce_one_alert(tenancy: Tenancy) -> None:
    b = budget(tenancy.org, "100", project=tenancy.project, recipients="x@acme.test")
    policy = alert_policy_for(tenancy.org)
    results = _race(lambda: alert_event_record(organization=tenancy.org, draft=_draft(b), policy=policy))
    assert sorted(r is None for r in results) == [False, True]
    assert AlertEvent.objects.count() == 1
    assert AlertDelivery.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_evaluations_notify_once_per_threshold(tenancy: Tenancy) -> None:
    budget(tenancy.org, "100", project=tenancy.project, recipients="x@acme.test", thresholds=[50, 80, 100])
    spend(tenancy.org, date(2026, 11, 3), "120", project=tenancy.project)
    with time_machine.travel(MONTH_END, tick=False):
        results = _race(lambda: len(alerts_evaluate(organization=tenancy.org)))
        assert sum(results) == 3
        for delivery_id in AlertDelivery.objects.values_list("pk", flat=True):
            deliver_alert.apply(args=[delivery_id])
            deliver_alert.apply(args=[delivery_id])  # redelivered message
    assert sorted(AlertEvent.objects.values_list("threshold", flat=True)) == [50, 80, 100]
    assert len(mail.outbox) == 3


# --- Webhooks to a loopback receiver ------------------------------------------------------------------


class Receiver:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/quotaboard"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([500, 502])
    yield r
    r.close()


@pytest.mark.django_db
@time_machine.travel(MONTH_END, tick=False)
def test_webhook_is_signed_and_retries_reuse_the_delivery_id(tenancy: Tenancy, receiver: Receiver) -> None:
    budget(
        tenancy.org, "100", project=tenancy.project, name="chat", thresholds=[100], webhook_url=receiver.url
    )
    spend(tenancy.org, date(2026, 11, 3), "100", project=tenancy.project)
    [event] = alerts_evaluate(organization=tenancy.org)
    delivery = event.deliveries.get()

    assert (
        deliver_alert.apply(args=[delivery.pk]).get() == DeliveryStatus.SENT
    )  # eager retries: 500, 502, 200

    assert len(receiver.requests) == 3
    # Signed with the budget's own secret (created on first delivery here), not the organization's.
    secret = encryption.decrypt(Budget.objects.get(name="chat").webhook_secret_encrypted)
    bodies = {body for _, body in receiver.requests}
    assert len(bodies) == 1  # byte-identical on every retry
    body = bodies.pop()
    for headers, _ in receiver.requests:
        assert headers[DELIVERY_HEADER] == str(delivery.public_id)
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
        assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["delivery_id"] == str(delivery.public_id)
    assert payload["alert_id"] == str(event.public_id)
    assert (payload["kind"], payload["threshold"], payload["period"]) == ("budget_threshold", 100, "2026-11")
    assert payload["data"]["actual"] == "100"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.SENT, 3, "")


@pytest.mark.django_db
@time_machine.travel(MONTH_END, tick=False)
def test_a_webhook_that_keeps_failing_is_marked_failed_after_the_last_retry(
    tenancy: Tenancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    countdowns: list[int] = []
    original_retry = Task.retry

    def spy_retry(task: Task, *args: Any, **kwargs: Any) -> Any:
        countdowns.append(kwargs["countdown"])
        return original_retry(task, *args, **kwargs)

    monkeypatch.setattr(Task, "retry", spy_retry)
    r = Receiver([500] * 20)
    try:
        budget(tenancy.org, "100", project=tenancy.project, thresholds=[100], webhook_url=r.url)
        spend(tenancy.org, date(2026, 11, 3), "100", project=tenancy.project)
        [event] = alerts_evaluate(organization=tenancy.org)
        delivery = event.deliveries.get()
        assert deliver_alert.apply(args=[delivery.pk]).get() == "failed"
    finally:
        r.close()
    # Exponential backoff between the 7 attempts (eager mode does not sleep, the countdowns are what a
    # worker would wait).
    assert countdowns == [30, 60, 120, 240, 480, 960]
    assert [delivery_backoff(n) for n in (6, 7, 20)] == [1800, 1800, 1800]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 7)
    assert delivery.last_error == "webhook answered HTTP 500"
    assert len({h[DELIVERY_HEADER] for h, _ in r.requests}) == 1


@pytest.mark.django_db
def test_the_webhook_secret_is_stored_encrypted(tenancy: Tenancy) -> None:
    policy = alert_policy_for(tenancy.org)
    secret = policy.webhook_secret()
    stored = AlertPolicy.objects.values_list("webhook_secret_encrypted", flat=True).get()
    assert len(secret) >= 40
    assert secret not in stored
    assert encryption.decrypt(stored) == secret
    assert alert_policy_for(tenancy.org).webhook_secret() == secret  # stable once created


# --- Accounts: low balance, anomaly, stale data -------------------------------------------------------


@pytest.mark.django_db
@time_machine.travel(MID_MONTH, tick=False)
def test_low_runway_raises_a_low_balance_alert_once_a_day(tenancy: Tenancy) -> None:
    account = factories.make_account(tenancy.org, "newapi", name="LaoZhang")
    BalanceSnapshot.objects.create(
        provider_account=account,
        taken_at=MID_MONTH - timedelta(hours=1),
        remaining=D("20"),
        raw_quota=10_000_000,
    )
    for day in range(13, 20):
        spend(tenancy.org, date(2026, 11, day), "5", account=account)  # 5/day: 4 days of runway
    [event] = alerts_evaluate(organization=tenancy.org)
    assert (event.kind, event.provider_account, event.period) == (
        AlertKind.LOW_BALANCE,
        account,
        "2026-11-20",
    )
    assert event.message == (
        "LaoZhang has $20.00 left, about 4.0 days at the 7-day average "
        "(this account alerts under 7 days of runway). Suggested top-up: $180.00."
    )
    assert alerts_evaluate(organization=tenancy.org) == []


@pytest.mark.django_db
@time_machine.travel(MID_MONTH, tick=False)
def test_a_balance_under_the_fixed_amount_alerts_even_with_long_runway(tenancy: Tenancy) -> None:
    account = factories.make_account(tenancy.org, "openrouter")
    account.low_balance_amount = D("50")
    account.save()
    BalanceSnapshot.objects.create(provider_account=account, taken_at=MID_MONTH, remaining=D("49.99"))
    [event] = alerts_evaluate(organization=tenancy.org)
    assert event.kind == AlertKind.LOW_BALANCE
    assert "no recent spend" in event.message


@pytest.mark.django_db
@time_machine.travel(MID_MONTH, tick=False)
def test_a_spend_spike_names_the_key_and_model_behind_it(tenancy: Tenancy) -> None:
    account = factories.make_account(tenancy.org, "newapi")
    BalanceSnapshot.objects.create(provider_account=account, taken_at=MID_MONTH, remaining=D("100000"))
    for n in range(1, 15):
        spend(tenancy.org, date(2026, 11, 20) - timedelta(days=n), "2", account=account, key="web")
    spend(tenancy.org, date(2026, 11, 20), "3", account=account, key="web")
    spend(tenancy.org, date(2026, 11, 20), "27", account=account, key="retry-loop", model="gpt-4.1")
    [event] = alerts_evaluate(organization=tenancy.org)
    assert (event.kind, event.period) == (AlertKind.SPEND_ANOMALY, "2026-11-20")
    assert event.data["key"] == "retry-loop"
    assert event.data["model"] == "gpt-4.1"
    assert event.message == (
        "$30.00 on Nov 20 against a 14-day average of $2.00 a day. "
        "Most of it: key retry-loop, model gpt-4.1 ($27.00)."
    )


@pytest.mark.django_db
def test_an_account_without_a_recent_successful_usage_sync_is_reported_stale(tenancy: Tenancy) -> None:
    with time_machine.travel(MID_MONTH - timedelta(days=2), tick=False):
        fresh = factories.make_account(tenancy.org, "openai", name="fresh")
        stale = factories.make_account(tenancy.org, "anthropic", name="stale")
    StreamState.objects.create(
        provider_account=fresh, stream="usage", last_success_at=MID_MONTH - timedelta(hours=1)
    )
    StreamState.objects.create(
        provider_account=stale,
        stream="usage",
        last_success_at=MID_MONTH - timedelta(hours=7),
        last_error="HTTP 401",
    )
    with time_machine.travel(MID_MONTH, tick=False):
        [event] = alerts_evaluate(organization=tenancy.org)
    assert (event.kind, event.provider_account) == (AlertKind.STALE_DATA, stale)
    assert "has not succeeded since Nov 20 08:00" in event.message


@pytest.mark.django_db
@time_machine.travel(MONTH_END, tick=False)
def test_the_management_command_twin_evaluates_and_sends(tenancy: Tenancy, capsys: Any) -> None:
    budget(tenancy.org, "100", project=tenancy.project, thresholds=[50], recipients="x@acme.test")
    spend(tenancy.org, date(2026, 11, 3), "60", project=tenancy.project)
    call_command("evaluate_alerts", "--org", "acme")
    assert "acme: 1 new alert(s), 1 sent, 0 failed" in capsys.readouterr().out
    assert len(mail.outbox) == 1
    call_command("evaluate_alerts", "--org", "acme")
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_worker_that_inserts_while_the_other_holds_its_insert_open_loses_to_the_constraint(
    tenancy: Tenancy,
) -> None:
    """Forces the overlap the thread race may or may not hit: worker A has inserted but not committed
    when worker B inserts the same (budget, kind, period, threshold). B must wait on A's row lock (seen in
    pg_locks, not guessed with a sleep), then lose to the unique constraint once A commits."""
    if connection.vendor != "postgresql":
        pytest.skip("row-lock waiting is a PostgreSQL behaviour; run with DATABASE_URL=postgres://...")
    b = budget(tenancy.org, "100", project=tenancy.project, recipients="x@acme.test")
    policy = alert_policy_for(tenancy.org)
    a_inserted = threading.Event()
    b_pid: list[int] = []
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def worker_a() -> None:
        try:
            with transaction.atomic():
                results["a"] = alert_event_record(organization=tenancy.org, draft=_draft(b), policy=policy)
                a_inserted.set()
                with connection.cursor() as cursor:  # wait until B is blocked on our uncommitted row
                    for _ in range(600):
                        cursor.execute(
                            "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = %s", [b_pid[0]]
                        )
                        if cursor.fetchone()[0]:
                            results["b_waited"] = True
                            break
                        cursor.execute("SELECT pg_sleep(0.05)")
        except BaseException as exc:
            errors.append(exc)
            a_inserted.set()
        finally:
            connection.close()

    def worker_b() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                b_pid.append(cursor.fetchone()[0])
            a_inserted.wait(30)
            results["b"] = alert_event_record(organization=tenancy.org, draft=_draft(b), policy=policy)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread_b = threading.Thread(target=worker_b)
    thread_b.start()
    while not b_pid and thread_b.is_alive():
        thread_b.join(0.01)
    thread_a = threading.Thread(target=worker_a)
    thread_a.start()
    thread_a.join(60)
    thread_b.join(60)
    assert not errors, errors
    assert results.get("b_waited") is True
    assert results["a"] is not None
    assert results["b"] is None
    assert AlertEvent.objects.count() == 1
    assert AlertDelivery.objects.count() == 1
