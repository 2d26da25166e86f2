"""A Celery app for F10: the real app, plus a poison payload that kills the pool child running it.

Started as ``celery -A tests.faults.poison_worker worker --pool prefork``. Accounts named
``poison-exit`` make the child call ``os._exit(1)`` in the middle of their ingest; ``poison-oom``
makes it allocate 256 MB and die by SIGKILL, as the kernel's OOM killer ends a process;
``poison-hang`` makes it hang until the pool kills it at the hard time limit. Every other
account ingests normally. ``QB_TEST_REJECT_ON_WORKER_LOST=1`` turns task_reject_on_worker_lost on.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_init, worker_process_init

from config.celery import app

__all__ = ["app"]

# Celery waits worker_lost_wait (10 s) for a dead child's last words before raising
# WorkerLostError; 1 s keeps the test short and changes nothing else.
app.conf.worker_lost_wait = 1.0


@worker_init.connect
def _reject_on_worker_lost(**kwargs: Any) -> None:
    # In the main process, where Celery decides between ack and requeue when a child dies.
    if os.environ.get("QB_TEST_REJECT_ON_WORKER_LOST") == "1":
        from usage.tasks import ingest_account_usage

        ingest_account_usage.reject_on_worker_lost = True


@worker_process_init.connect
def _poison(**kwargs: Any) -> None:
    # In each pool child, after Django is set up: wrap the chunk loop, where a parser would blow up.
    from usage import ingest

    real = ingest._ingest_chunks

    def poisoned(lease: Any, *args: Any, **kw: Any) -> None:
        if lease.account.name == "poison-exit":
            os._exit(1)
        if lease.account.name == "poison-hang":
            # Stuck like a call inside C: deaf to the soft time limit, until the pool kills the child.
            while True:
                try:
                    time.sleep(3600)
                except SoftTimeLimitExceeded:
                    continue
        if lease.account.name == "poison-oom":
            ballast = bytearray(256 << 20)
            os.kill(os.getpid(), signal.SIGKILL)
            del ballast
        real(lease, *args, **kw)

    ingest._ingest_chunks = poisoned
