"""Start a real Celery worker subprocess against the test database (shared by the worker tests).

The broker is CELERY_TEST_BROKER_URL (CI sets redis://127.0.0.1:6379/15) or, without it, the
embedded file-system transport the demo uses. Each worker listens on a private queue, so a running
demo worker never takes a test's message.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def worker_database_url() -> str:
    """The URL of the database this test runs against (the test database, not the configured one)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = quote(db["USER"] or "")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def broker_url() -> str:
    return os.environ.get("CELERY_TEST_BROKER_URL") or settings.CELERY_BROKER_URL


def private_queue() -> str:
    return f"qb-test-{uuid.uuid4().hex[:12]}"


def start_worker(
    queue: str,
    *,
    log_file: Path | None = None,
    database_url: str | None = None,
    broker: str | None = None,
    pool: str = "solo",
    app: str = "config",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Start ``celery worker`` on ``queue``: solo pool by default (the task runs in the process we can
    SIGKILL), ``pool="prefork"`` for one pool child the task may kill.

    Output goes to ``log_file`` when given (a file cannot fill up and block the worker like an
    unread pipe), else to a pipe the caller reads with ``communicate()``. ``database_url`` and
    ``broker`` default to the test database and the test broker.
    """
    env = {
        **os.environ,
        "DATABASE_URL": database_url or worker_database_url(),
        "CELERY_BROKER_URL": broker or broker_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "QB_VAR_DIR": str(settings.VAR_DIR),
        **(env or {}),
    }
    out = open(log_file, "a") if log_file else subprocess.PIPE  # noqa: SIM115 (closed below)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-Q",
            queue,
            "-c",
            "1",
            "--pool",
            pool,
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if log_file:
        out.close()  # type: ignore[union-attr]  (the child holds its own copy of the descriptor)
    return worker
