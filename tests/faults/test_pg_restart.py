"""F2 pg_restart_mid_ingest: ``pg_ctl restart -m fast`` under a real worker and a real web process.

A private PostgreSQL cluster (tests/faults/conftest.py) is restarted while a real Celery worker is
in the middle of a ~50,000-row New API backfill from the provider simulator, and while it rebuilds
rollups. To restart at a known point, the test holds the organization's row lock (the lock every
rollup refresh takes inside the chunk transaction), waits until the worker's backend is blocked on
it, then restarts: the worker's transaction is cut off mid-write, as a real restart would do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client

from config.celery import app as celery_app
from projects.models import Role
from usage.ingest import ErrorKind
from usage.models import IngestRun, RunStatus, Stream, StreamState, UsageDaily, UsageRecord
from usage.tasks import rebuild_rollups

from .. import factories
from ..celery_worker import broker_url
from ..usage.conftest import SIM_NOW, sim_account
from ..usage.test_worker_ingest import (
    assert_rollups_match_records,
    assert_stored_reseller_window_is_exact,
    enqueue_ingest,
    finished_runs,
    ingest_and_wait,
    running_worker,
)
from .conftest import PRIVATE_ALIAS, ROOT, PrivatePostgres, free_port, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.celery_worker]


def hold_org_lock(server: PrivatePostgres, org_id: int) -> psycopg.Connection:
    """Take the organization's row lock (as a rollup refresh does) and keep it until the restart."""
    conn = psycopg.connect(server.admin_dsn())
    conn.execute("SELECT 1 FROM projects_organization WHERE id = %s FOR UPDATE", [org_id])
    return conn


def a_backend_waits_on_a_lock(server: PrivatePostgres) -> bool:
    with psycopg.connect(server.admin_dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = %s",
            [server.dbname],
        ).fetchone()
    return bool(row and row[0])


def fresh() -> None:
    """The restart killed this process's own connection too: drop it before the next query."""
    connections[PRIVATE_ALIAS].close()


def test_a_restart_mid_backfill_is_retried_and_the_totals_are_exact(private_db, simulator, tmp_path) -> None:
    org = factories.make_org("Acme AI", slug="acme")
    account = sim_account(org, simulator, "reseller")
    start, end = SIM_NOW - timedelta(days=21), SIM_NOW
    expected_rows = sum(t.rows for t in simulator.expected_usage("reseller", start, end).values())
    assert expected_rows > 45_000

    with running_worker(tmp_path, database_url=private_db.url) as worker:
        enqueue_ingest(worker, account, start, end)

        def some_chunks_committed() -> bool:
            state = StreamState.objects.filter(provider_account=account, stream=Stream.USAGE).first()
            return bool(state and state.cursor_at and state.cursor_at >= start + timedelta(days=2))

        worker.wait_until(some_chunks_committed, "the backfill to commit two chunks")
        locker = hold_org_lock(private_db, org.pk)
        wait_for(lambda: a_backend_waits_on_a_lock(private_db), "the worker to block mid-chunk")
        restarted_at = time.monotonic()
        private_db.restart()
        locker.close()
        fresh()
        committed = UsageRecord.objects.filter(provider_account=account).count()
        assert 0 < committed < expected_rows

        worker.wait_until(
            lambda: any(run.status == RunStatus.SUCCESS for run in finished_runs(account)),
            "a retry to finish the backfill",
            timeout=180,
        )
        log = worker.output()

    runs = finished_runs(account)
    assert [run.status for run in runs] == [RunStatus.FAILED, RunStatus.SUCCESS], [
        (r.status, r.error_kind, r.error) for r in runs
    ]
    cut, retried = runs
    assert "retry" in log.lower(), log
    # The cut run is closed (on a new connection) as transient, and its lease freed for the retry.
    assert cut.error_kind == ErrorKind.TRANSIENT
    assert cut.error == "database connection lost (OperationalError); retried"
    assert time.monotonic() - restarted_at < 150
    assert retried.rows_new == expected_rows - committed
    assert_stored_reseller_window_is_exact(simulator, account, start, end, expected_rows)
    assert UsageDaily.objects.filter(provider_account=account).exists()
    assert not IngestRun.objects.filter(provider_account=account, finished_at__isnull=True).exists()


WEB_SERVER = """
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

from config.wsgi import application


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


# One thread, like a gunicorn sync worker: its database connection persists between requests.
server = make_server("127.0.0.1", int(sys.argv[1]), application, handler_class=Quiet)
print("serving", flush=True)
server.serve_forever()
"""


def test_the_web_shows_a_plain_error_page_while_the_database_is_down_then_recovers(
    private_db, tmp_path
) -> None:
    org = factories.make_org("Acme AI", slug="acme")
    admin = factories.make_member(org, Role.ADMIN, factories.make_user("admin")).user
    client = Client()
    client.force_login(admin)
    cookies = {django_settings.SESSION_COOKIE_NAME: client.cookies[django_settings.SESSION_COOKIE_NAME].value}
    port = free_port()
    log = tmp_path / "web.log"
    env = {
        **os.environ,
        "DATABASE_URL": private_db.url,
        # Production settings but plain static storage (no collectstatic manifest in a test).
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DEBUG": "false",
        "QB_VAR_DIR": str(django_settings.VAR_DIR),
    }
    with open(log, "w") as out:
        web = subprocess.Popen(
            [sys.executable, "-c", WEB_SERVER, str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/o/acme/"

    def get() -> httpx.Response:
        return httpx.get(url, cookies=cookies, timeout=30, follow_redirects=False)

    try:
        wait_for(lambda: "serving" in log.read_text(), "the web process to listen")
        assert get().status_code == 200
        # The process keeps its connection (CONN_MAX_AGE); the restart kills it server-side. The
        # next request must not reuse the dead connection ("connection already closed").
        private_db.restart()
        assert get().status_code == 200
        private_db.stop()
        try:
            down = get()
        finally:
            private_db.start()
        assert down.status_code == 500
        for leak in ("Traceback", "OperationalError", "psycopg", "127.0.0.1", str(private_db.port)):
            assert leak not in down.text
        assert [get().status_code for _ in range(3)] == [200, 200, 200]
    finally:
        web.terminate()
        web.wait(timeout=30)
        fresh()


def test_a_restart_mid_rollup_rebuild_is_retried_and_rollups_equal_raw(
    private_db, simulator, tmp_path
) -> None:
    org = factories.make_org("Acme AI", slug="acme")
    account = sim_account(org, simulator, "reseller")
    start, end = SIM_NOW - timedelta(days=3), SIM_NOW

    with running_worker(tmp_path, database_url=private_db.url) as worker:
        ingest_and_wait(worker, [account], start, end)
        UsageDaily.objects.filter(organization=org).delete()
        locker = hold_org_lock(private_db, org.pk)
        with celery_app.connection_for_write(broker_url()) as conn:
            rebuild_rollups.apply_async(args=[org.pk], queue=worker.queue, connection=conn)
        wait_for(
            lambda: a_backend_waits_on_a_lock(private_db), "the rebuild to block on the organization lock"
        )
        private_db.restart()
        locker.close()
        fresh()
        worker.wait_until(
            lambda: (
                "rebuild_rollups" in worker.output() and "succeeded" in worker.output().split("retry:")[-1]
            ),
            "the retried rebuild to succeed",
            timeout=120,
        )
        log = worker.output()

    assert "usage.tasks.rebuild_rollups" in log and "retry: Retry in" in log, log
    assert_rollups_match_records(account)
    assert UsageDaily.objects.filter(organization=org).count() >= 3
