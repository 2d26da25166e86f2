"""L2 load_push_duplicates: concurrent clients push 1,000-record batches with resends; nothing is stored twice.

Not part of the test run (bounded by --seconds). Usage (from the repository root):
    .venv/bin/python -m bench.load_push [--clients 4] [--seconds 60] [--batch 1000]   # throwaway SQLite
    .venv/bin/python -m bench.load_push --pg     # throwaway PostgreSQL database qb_load_push

A real web process (``manage.py runserver --noreload``, threaded) serves POST /api/v1/usage on a
throwaway database. Each client sends batches of --batch records for --seconds: 5 % of each batch are
record ids shared by every client (same id, same content: the same request reported twice), 10 % of
batches are resent with the same Idempotency-Key (half at once from a second thread, while the first
is in flight; half after it answered), and every 20th batch is followed by the same key with another
body. Afterwards it checks: stored records = distinct record ids sent; Σcost = the generator's
distinct Σ exactly (Decimal); rollups = raw; every completed resend got the first reply byte for byte;
in-flight resends got 409 or that replay; same key + new body got 422. Exits non-zero on any mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx

from bench.webserver import web_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PG_DB = "qb_load_push"
MODELS = ["gpt-4o", "gpt-4.1-mini", "claude-sonnet-4", "deepseek-chat"]
SHARED_IDS = 20_000


def record(request_id: str) -> dict[str, object]:
    """The record for an id: deterministic, so two clients reporting one request send the same thing."""
    digest = int(hashlib.sha256(request_id.encode()).hexdigest()[:12], 16)
    cost = Decimal(digest % 10**8) / Decimal(10**10)  # up to 0.01 with ten places
    return {
        "request_id": request_id,
        "occurred_at": f"2026-10-{1 + digest % 28:02}T{digest % 24:02}:{digest % 60:02}:00+00:00",
        "model": MODELS[digest % len(MODELS)],
        "input_tokens": digest % 5000,
        "output_tokens": digest % 900,
        "cost": f"{cost:.10f}",
        "currency": "USD",
    }


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: dict[str, Decimal] = field(default_factory=dict)  # distinct record id -> cost
    batches: int = 0
    records: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def count(self, what: str) -> None:
        with self.lock:
            self.statuses[what] = self.statuses.get(what, 0) + 1

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)


def race(url: str, body: bytes, headers: dict[str, str], replies: list[httpx.Response]) -> None:
    """Send ``body`` a moment after the first copy, from another connection."""
    time.sleep(0.01)
    with httpx.Client(timeout=120) as other:
        replies.append(other.post(url, content=body, headers=headers))


def client_loop(n: int, url: str, secret: str, deadline: float, batch: int, tally: Tally) -> None:
    rng = random.Random(n)
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    with httpx.Client(timeout=120) as http:
        b = 0
        while time.monotonic() < deadline:
            b += 1
            ids = [
                f"shared-{rng.randrange(SHARED_IDS)}" if rng.random() < 0.05 else f"c{n}-b{b}-{i}"
                for i in range(batch)
            ]
            records = [record(i) for i in dict.fromkeys(ids)]
            body = json.dumps({"records": records}).encode()
            key = {"Idempotency-Key": f"c{n}-b{b}"}
            resend = rng.random() < 0.10
            in_flight: list[httpx.Response] = []
            racer = None
            if resend and b % 2:
                # The same request again while the first is in flight (a client retrying on a timeout).
                racer = threading.Thread(target=race, args=(url, body, {**headers, **key}, in_flight))
                racer.start()
            started = time.monotonic()
            first = http.post(url, content=body, headers={**headers, **key})
            elapsed = time.monotonic() - started
            tally.count(f"first {first.status_code}")
            if first.status_code != 200:
                # Only a racing copy may have taken the key first; then that copy carried the batch.
                if first.status_code == 409 and racer is not None:
                    racer.join()
                else:
                    tally.fail(f"client {n} batch {b}: {first.status_code} {first.text[:200]}")
                    continue
            if racer is not None:
                racer.join()
                for copy in in_flight:
                    tally.count(f"in-flight resend {copy.status_code}")
                    if copy.status_code not in {200, 409}:
                        tally.fail(f"in-flight resend got {copy.status_code}")
                    if copy.status_code == 200 and first.status_code == 200 and copy.content != first.content:
                        tally.fail("in-flight resend reply differs from the first reply")
            elif resend:
                replay = http.post(url, content=body, headers={**headers, **key})
                tally.count(f"resend {replay.status_code}")
                if replay.status_code != 200 or replay.content != first.content:
                    tally.fail(f"resend of client {n} batch {b} was not a byte-identical replay")
            if b % 20 == 0:
                other = json.dumps({"records": records[:1]}).encode()
                conflict = http.post(url, content=other, headers={**headers, **key})
                tally.count(f"same key + new body {conflict.status_code}")
                if conflict.status_code != 422:
                    tally.fail(f"same key + new body got {conflict.status_code}")
            answer = json.loads(first.content) if first.status_code == 200 else {"rejected": []}
            rejected = {int(item["index"]) for item in answer.get("rejected", [])}
            for item in answer.get("rejected", [])[:3]:
                tally.fail(f"record {records[int(item['index'])]} rejected: {item['reason']}")
            records = [item for index, item in enumerate(records) if index not in rejected]
            with tally.lock:
                tally.batches += 1
                tally.records += len(records)
                tally.latencies.append(elapsed)
                for item in records:
                    tally.sent[str(item["request_id"])] = Decimal(str(item["cost"]))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--pg", action="store_true", help="use a throwaway PostgreSQL database")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="qb-load-push-"))
    env = {
        **os.environ,
        "QB_VAR_DIR": str(var),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        # The per-token limit (600/min) would throttle the run; throttling is A4's test, not this one.
        "QB_API_RATE_LIMIT_PER_MINUTE": "1000000",
    }
    if args.pg:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB}")
            conn.execute(f"CREATE DATABASE {PG_DB}")
        env["DATABASE_URL"] = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_DB
    else:
        env["DATABASE_URL"] = f"sqlite:///{var / 'load.sqlite3'}"
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)

    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db.models import Count, Sum

    from projects.models import Organization
    from projects.services import ingest_token_create
    from usage.models import UsageDaily, UsageRecord

    org = Organization.objects.create(name="Load", slug="load")
    admin = User.objects.create_user("load-admin")
    _token, secret = ingest_token_create(organization=org, name="load", created_by=admin)

    ok = False
    try:
        with web_server(env, var / "server.log") as base:
            url = f"{base}/api/v1/usage"
            tally = Tally()
            deadline = time.monotonic() + args.seconds
            started = time.monotonic()
            threads = [
                threading.Thread(target=client_loop, args=(n, url, secret, deadline, args.batch, tally))
                for n in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.monotonic() - started

        stored = UsageRecord.objects.filter(organization=org).aggregate(n=Count("pk"), cost=Sum("cost"))
        rolled = UsageDaily.objects.filter(organization=org).aggregate(cost=Sum("cost"))
        expected_cost = sum(tally.sent.values(), Decimal(0))
        checks = {
            "stored records = distinct ids sent": stored["n"] == len(tally.sent),
            "Σcost = generator's distinct Σ exactly": stored["cost"] == expected_cost,
            "rollups = raw": rolled["cost"] == stored["cost"],
            "no protocol failures": not tally.failures,
        }
        latencies = sorted(tally.latencies)
        p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else 0.0
        print(
            f"database: {'PostgreSQL' if args.pg else 'SQLite'}; {args.clients} clients × {args.seconds:.0f} s"
        )
        print(
            f"batches: {tally.batches} ({tally.records} records incl. shared ids) in {wall:.1f} s = "
            f"{tally.records / wall:,.0f} records/s; batch p50 {statistics.median(latencies or [0]):.2f} s, "
            f"p95 {p95:.2f} s"
        )
        print(f"answers: {dict(sorted(tally.statuses.items()))}")
        print(
            f"distinct ids: {len(tally.sent)}; stored: {stored['n']}; Σcost sent {expected_cost}; stored {stored['cost']}"
        )
        for name, passed in checks.items():
            print(f"{'ok  ' if passed else 'FAIL'} {name}")
        for failure in tally.failures[:10]:
            print("  ", failure)
        ok = all(checks.values())
    finally:
        from django.db import connections

        connections.close_all()
        if args.pg:
            import psycopg

            with psycopg.connect(
                PG_ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True
            ) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        shutil.rmtree(var, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
