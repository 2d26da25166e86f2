"""S1, the worker half: a provider credential never reaches a broker message or a DEBUG worker log.

A real worker logs at DEBUG (LOG_LEVEL=DEBUG, as an operator chasing a problem would run it) on a
private redis-server. The account's credential is a canary ``qb-canary-<uuid4>``; a loopback server
plays the provider: a good page, then a 401 and a ``success: false`` answer that both echo the
token back. Every queued message is dumped from Redis before the worker takes it; afterwards the
whole Redis keyspace is dumped again, and the worker's log (which also receives the console e-mail
backend's output) is read in full. The in-process half (pages, exports, admin, task arguments,
caplog at DEBUG) is tests/projects/test_secrets_canary.py and test_services_ingest.py.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from config.celery import app as celery_app
from usage.models import IngestRun, Stream
from usage.tasks import ingest_account_usage

from .. import factories
from ..celery_worker import private_queue
from ..usage.loopback import Loopback, Reply, reply
from ..usage.test_worker_ingest import Worker
from .conftest import PrivateRedis, private_redis_server

pytestmark = [pytest.mark.fault, pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

DAY_START = datetime.fromisoformat("2026-11-18T00:00:00+00:00")


def dump_keyspace(redis: PrivateRedis) -> str:
    """Every key and every value in the private Redis, as text (lists, hashes, sets, strings)."""
    parts = []
    for key in redis.cli("--scan").splitlines():
        kind = redis.cli("type", key)
        command = {
            "list": ["lrange", key, "0", "-1"],
            "hash": ["hgetall", key],
            "set": ["smembers", key],
            "zset": ["zrange", key, "0", "-1", "withscores"],
            "string": ["get", key],
        }.get(kind)
        parts.append(f"{key} {kind} " + (redis.cli(*command) if command else ""))
    return "\n".join(parts)


def test_a_debug_worker_and_the_broker_never_hold_the_credential(
    tenancy, loopback: Loopback, tmp_path
) -> None:
    canary = f"qb-canary-{uuid.uuid4()}"
    account = factories.make_account(tenancy.org, "newapi", base_url=loopback.url, credential=canary)
    echo_401 = {"success": False, "message": f"invalid token {canary}"}
    echo_false = {"success": False, "message": f"token {canary} has no quota"}
    # One answer per queued ingest, told apart by the day it asks for.
    answers = [reply("newapi/log_page3.json"), reply(echo_401, status=401), reply(echo_false)]

    def provider(query: dict[str, list[str]]) -> Reply:
        day = (int(query["start_timestamp"][0]) - int(DAY_START.timestamp())) // 86400
        return answers[min(max(day, 0), 2)]

    loopback.routes["/api/log/self"] = provider
    runs = IngestRun.objects.filter(provider_account=account, stream=Stream.USAGE)

    with private_redis_server(appendonly=False) as redis:
        queue = private_queue()
        worker = Worker(
            queue,
            tmp_path / "worker.log",
            broker=redis.url,
            env={"LOG_LEVEL": "DEBUG", "QB_PROVIDER_TIMEOUT": "5"},
        )
        # Three ingests queued before any worker runs: their messages sit in Redis to be dumped.
        with celery_app.connection_for_write(redis.url) as conn:
            for day in range(3):
                start = DAY_START + timedelta(days=day)
                ingest_account_usage.apply_async(
                    args=[account.pk, start.isoformat(), (start + timedelta(hours=1)).isoformat()],
                    queue=queue,
                    connection=conn,
                )
        queued = dump_keyspace(redis)
        assert queued.count(f"{queue} list") == 1 and "ingest_account_usage" in queued  # the control
        worker.start()
        try:
            worker.wait_until(
                lambda: (
                    runs.filter(finished_at__isnull=False).count() >= 3
                    and redis.cli("hlen", "unacked") == "0"
                    and redis.cli("llen", queue) == "0"
                    and not runs.filter(finished_at__isnull=True).exists()
                ),
                "the three ingests (and the retries of the last) to end",
            )
        finally:
            worker.stop()
        after = dump_keyspace(redis)
    log = worker.output(limit=None)

    ended = [(str(run.status), run.error) for run in runs.order_by("pk")]
    # The good page lands; the 401 fails at once; ``success: false`` is retried, then given up.
    assert [status for status, _ in ended[:2]] == ["success", "failed"] and "HTTP 401" in ended[1][1], ended
    assert {status for status, _ in ended[2:]} == {"failed"} and "has no quota" in ended[-1][1], ended
    assert " DEBUG " in log and "ingest_account_usage" in log  # it did log at DEBUG, about these tasks
    # The worker did send the token (the loopback saw it), and the provider echoed it back...
    assert any(canary in " ".join(seen.headers.values()) for seen in loopback.seen)
    # ...yet it is nowhere: not in the queued messages, the keyspace afterwards, the DEBUG log, the runs.
    for where, text in (("queued messages", queued), ("redis keyspace", after), ("worker log", log)):
        assert canary not in text, where
        assert canary[-12:] not in text, where  # not even a tail of it
    assert not any(canary in (run.error or "") for run in runs)
