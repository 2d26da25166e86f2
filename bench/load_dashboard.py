"""L1 load_dashboard: concurrent signed-in users on every dashboard page and htmx panel.

Not part of the test run (bounded by --seconds). Usage (from the repository root):
    .venv/bin/python -m bench.load_dashboard [--users 20] [--seconds 60] [--days 30] [--think 1 3]

A throwaway database (SQLite in a temporary QB_VAR_DIR; DATABASE_URL is honoured if set) is seeded
with the demo organization (``manage.py seed_demo --days N``) plus a second organization whose
project, key, provider account and model names carry a canary string (``qb-canary-<hex>``), with
usage rows in the same days. A real web process (``manage.py runserver --noreload``, threaded)
serves it on a free loopback port.

URLs: every organization URL the access matrix (tests/projects/test_url_access.py) says the admin
may GET with 200, with kwargs filled from the demo organization, plus the explorer body and every
panel of usage/panels.py on the explorer, a project and a key (the htmx list of
tests/usage/test_query_counts.py). Each of --users threads signs in as the demo admin through the
login form (CSRF cookie + token) and cycles through the URLs for --seconds, waiting --think seconds
(uniform, default 1–3 s, as a locust user's ``between(1, 3)``) between requests; ``--think 0 0``
sends back to back, which on two cores measures queueing more than the app.

``--bench-db NAME --org bench-b`` runs against a PostgreSQL database kept by ``make bench``
(``BENCH_KEEP=1``; server URL from BENCH_PG_URL) instead of seeding one: the users sign in as the
organization's bench admin (password "bench") and load its pages; a budget is created if it has none;
the canary organization is added next to the bench organizations (the database is a throwaway).

Checks (exit 1 if any fails): no answer other than 200; overall p95 ≤ --p95-ms (500); no body
contains the canary; SQL queries per URL, counted in-process (django.test.Client +
CaptureQueriesContext) before and after the load, are equal.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench.webserver import web_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
PASSWORD = "quotaboard-demo"

# (label, path with query string, htmx?)
Target = tuple[str, str, bool]


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    canary_hits: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def add(self, label: str, elapsed: float, status: int, canary: bool, note: str = "") -> None:
        with self.lock:
            self.latencies.setdefault(label, []).append(elapsed)
            if status != 200:
                self.errors[label] = self.errors.get(label, 0) + 1
                if len(self.failures) < 20:
                    self.failures.append(f"{label}: {status} {note}")
            if canary:
                self.canary_hits[label] = self.canary_hits.get(label, 0) + 1


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (so with few samples the p95 is the slowest, never below the p50)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


def login(http: httpx.Client, base: str, username: str, password: str) -> None:
    """Sign in through the login form; raises if no session comes back."""
    page = http.get(f"{base}/login/")
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if not match:
        raise RuntimeError("no CSRF token on the login page")
    answer = http.post(
        f"{base}/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": match.group(1)},
        headers={"Referer": f"{base}/login/"},
    )
    if answer.status_code != 302:
        raise RuntimeError(f"login answered {answer.status_code}")


def user_loop(
    n: int,
    users: int,
    base: str,
    targets: list[Target],
    canary: str,
    deadline: float,
    tally: Tally,
    think: tuple[float, float],
    credentials: tuple[str, str],
) -> None:
    with httpx.Client(timeout=60, follow_redirects=False) as http:
        try:
            login(http, base, *credentials)
        except Exception as exc:
            tally.add("login", 0.0, 0, False, repr(exc))
            return
        i = n * len(targets) // users  # users start spread over the list, so all URLs are hit at once
        while time.monotonic() < deadline:
            label, path, htmx = targets[i % len(targets)]
            i += 1
            headers = {"HX-Request": "true"} if htmx else {}
            started = time.monotonic()
            try:
                response = http.get(base + path, headers=headers)
            except httpx.HTTPError as exc:
                tally.add(label, time.monotonic() - started, 0, False, repr(exc))
                continue
            elapsed = time.monotonic() - started
            tally.add(label, elapsed, response.status_code, canary in response.text, response.text[:120])
            if think[1] > 0:  # a person reads the page before the next click (locust's wait_time)
                time.sleep(random.uniform(*think))


def seed_canary_org(canary: str, days: int) -> Any:
    """A second organization whose every name carries ``canary``, with usage in the demo's days.

    Returns its admin user, for the positive control (the canary is on that org's own pages).
    """
    from django.contrib.auth.models import User
    from django.utils import timezone

    from projects.models import ApiKey, Membership, Organization, Project, ProviderAccount, Role
    from usage.providers.base import UsageRow
    from usage.services import usage_rows_upsert

    org = Organization.objects.create(name=f"Org {canary}", slug=canary, timezone="UTC", currency="USD")
    project = Project.objects.create(organization=org, name=f"Project {canary}", slug=f"{canary}-p")
    account = ProviderAccount(
        organization=org,
        kind="newapi",
        name=f"Account {canary}",
        slug=f"{canary}-a",
        base_url="http://127.0.0.1:9",
    )
    account.set_credential("sk-canary-credential-0000")
    account.save()
    key = ApiKey.objects.create(
        organization=org,
        project=project,
        provider_account=account,
        name=f"key {canary}",
        external_id=f"{canary}-k",
    )
    now = timezone.now().replace(microsecond=0)
    rows = [
        UsageRow(
            occurred_at=now - timedelta(days=day, hours=hour),
            model=f"{canary}-model",
            natural_key=f"{canary}-{day}-{hour}",
            input_tokens=1000 + hour,
            output_tokens=100 + day,
            requests=1 + hour,
            cost=Decimal("0.25") + Decimal(hour) / 100,
            status="error" if hour == 5 else "success",
            error_code="429" if hour == 5 else "",
            key_external_id=key.external_id,
            key_name=key.name,
        )
        for day in range(min(days, 30))
        for hour in range(0, 24, 3)
    ]
    usage_rows_upsert(organization=org, rows=rows, account=account)
    user = User.objects.create_user(f"{canary}-admin")
    Membership.objects.create(organization=org, user=user, role=Role.ADMIN)
    return user


def canary_visible_to_its_own_org(canary: str, user: Any) -> bool:
    """Positive control: the canary org's own overview and explorer show the canary names."""
    from django.test import Client
    from django.urls import reverse

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    pages = [reverse("overview", args=[canary]), reverse("usage_explorer", args=[canary]) + "?preset=30d"]
    return all(canary.encode() in client.get(page).content for page in pages)


def build_targets(org_slug: str = "acme-ai", username: str = "admin") -> tuple[list[Target], Any]:
    """Every org URL the admin may GET (200 in the access matrix) plus every htmx panel, for one org."""
    from django.urls import reverse
    from django.utils import timezone

    from billing.models import AlertEvent, Budget
    from projects.models import ApiKey, ImportJob, Membership, Organization, Project, ProviderAccount
    from projects.services import ingest_token_create
    from tests.projects.test_url_access import ROLE_MATRIX, _kwarg_names, org_url_names
    from usage.panels import PANELS

    org = Organization.objects.get(slug=org_slug)
    admin = Membership.objects.get(organization=org, user__username=username).user
    project = Project.objects.filter(organization=org).order_by("slug").first()
    key = ApiKey.objects.filter(organization=org, project=project).order_by("pk").first()
    account = ProviderAccount.objects.filter(organization=org).order_by("slug").first()
    budget = Budget.objects.filter(organization=org).order_by("pk").first() or Budget.objects.create(
        organization=org, project=project, monthly_amount=Decimal("1000")
    )
    assert project and key and account, f"{org_slug} lacks a project, a key with a project or an account"
    local_now = timezone.now().astimezone(org.zoneinfo)
    month = (local_now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    alert = AlertEvent.objects.filter(organization=org).order_by("pk").first() or AlertEvent.objects.create(
        organization=org, kind="stale_data", period=month, title="load", message="load run"
    )
    token = ingest_token_create(organization=org, name="load", created_by=admin)[0]
    job = ImportJob.objects.create(organization=org, format="csv", original_name="load.csv", stored_name="x")
    kwargs_from_demo = {
        "org_slug": org.slug,
        "project_slug": project.slug,
        "account_slug": account.slug,
        "key_id": str(key.public_id),
        "token_id": str(token.public_id),
        "import_id": str(job.public_id),
        "budget_id": str(budget.public_id),
        "alert_id": str(alert.public_id),
        "month": month,
    }
    targets: list[Target] = []
    for name in org_url_names():
        if ROLE_MATRIX[name]["admin"][0] != 200:
            continue
        kwargs = {kwarg: kwargs_from_demo[kwarg] for kwarg in _kwarg_names(name)}
        targets.append((name, reverse(name, kwargs=kwargs), False))
    explorer = reverse("usage_explorer", args=[org.slug])
    project_page = reverse("project_detail", args=[org.slug, project.slug])
    key_page = reverse("key_detail", args=[org.slug, key.public_id])
    targets.append(("explorer body", f"{explorer}?preset=30d", True))
    # The other htmx partials the templates fetch with hx-get (grep hx-get templates/).
    review = reverse("month_review_month", args=[org.slug, month])
    targets.append(("month review body", review, True))
    budgets = reverse("budget_list", args=[org.slug])
    targets.append(("budget panel", f"{budgets}?panel=budgets&month={month}", True))
    sources = reverse("data_sources", args=[org.slug])
    targets.append(("data source card", f"{sources}?account={account.slug}", True))
    targets.append(("import card", reverse("import_detail", args=[org.slug, job.public_id]), True))
    targets.append(("panel errors, errors only", f"{explorer}?preset=30d&panel=errors&status=error", True))
    for panel in PANELS:
        targets.append((f"panel {panel}", f"{explorer}?preset=30d&panel={panel}", True))
        targets.append((f"project panel {panel}", f"{project_page}?preset=30d&panel={panel}", True))
        targets.append((f"key panel {panel}", f"{key_page}?preset=30d&panel={panel}", True))
    return targets, admin


def count_queries(targets: list[Target], admin: Any, canary: str) -> tuple[dict[str, int], list[str]]:
    """SQL queries per URL for one in-process GET as the admin; also the URLs not 200 or leaking."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(admin)
    client.get(targets[0][1])  # warm caches (session, templates) so the first URL is not special
    counts: dict[str, int] = {}
    problems: list[str] = []
    for label, path, htmx in targets:
        headers = {"HX-Request": "true"} if htmx else {}
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(path, headers=headers)
            # Exports stream: their queries run while the body is read, so read it inside the count.
            body = (
                b"".join(response.streaming_content)  # type: ignore[attr-defined]
                if response.streaming
                else response.content
            )
        counts[label] = len(ctx.captured_queries)
        if response.status_code != 200:
            problems.append(f"{label}: in-process {response.status_code}")
        elif canary.encode() in body:
            problems.append(f"{label}: in-process body contains the canary")
    return counts, problems


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--days", type=int, default=30, help="days of demo history to seed (default 30)")
    parser.add_argument("--p95-ms", type=float, default=500)
    parser.add_argument(
        "--think",
        type=float,
        nargs=2,
        default=(1.0, 3.0),
        metavar=("MIN", "MAX"),
        help="seconds each user waits between requests, uniformly drawn (default 1 3, like locust's "
        "between(1, 3)); 0 0 sends back to back",
    )
    parser.add_argument("--bench-db", default="", help="a database kept by make bench (BENCH_KEEP=1)")
    parser.add_argument("--org", default="bench-b", help="with --bench-db: the organization to load")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="qb-load-dashboard-"))
    try:
        return run(args, var)
    finally:
        shutil.rmtree(var, ignore_errors=True)


def run(args: argparse.Namespace, var: Path) -> int:
    """Seed, measure and print; returns the exit status (0 when every check held)."""
    env = {
        **os.environ,
        "QB_VAR_DIR": str(var),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        # Pages are measured, not their static files (which the run never fetches): no collectstatic.
        "QB_COLLECTSTATIC": "0",
    }
    if args.bench_db:
        pg_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
        env["DATABASE_URL"] = f"{pg_url}/{args.bench_db}"
        org_slug, username, password = args.org, f"{args.org}-admin", "bench"
    else:
        env.setdefault("DATABASE_URL", f"sqlite:///{var / 'load.sqlite3'}")
        org_slug, username, password = "acme-ai", "admin", PASSWORD
    os.environ.update(env)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    if not args.bench_db:
        subprocess.run(
            [sys.executable, "manage.py", "seed_demo", "--days", str(args.days), "--password", PASSWORD],
            cwd=ROOT,
            env=env,
            check=True,
        )
        print(f"seeded in {time.monotonic() - t0:.0f} s")

    import django

    django.setup()
    from django.db import connections

    canary = f"qb-canary-{uuid.uuid4().hex[:12]}"
    canary_admin = seed_canary_org(canary, args.days)
    control = canary_visible_to_its_own_org(canary, canary_admin)
    targets, admin = build_targets(org_slug, username)
    idle, problems_before = count_queries(targets, admin, canary)
    connections.close_all()  # SQLite: let the server's threads write sessions without our open handle

    ok = False
    with web_server(env, var / "server.log") as base:
        tally = Tally()
        started = time.monotonic()
        deadline = started + args.seconds
        threads = [
            threading.Thread(
                target=user_loop,
                args=(
                    n,
                    args.users,
                    base,
                    targets,
                    canary,
                    deadline,
                    tally,
                    tuple(args.think),
                    (username, password),
                ),
            )
            for n in range(args.users)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
    try:
        after, problems_after = count_queries(targets, admin, canary)
        all_latencies = [v for values in tally.latencies.values() for v in values]
        p95 = percentile(all_latencies, 0.95)
        requests = len(all_latencies)
        errors = sum(tally.errors.values())
        from usage.models import UsageRecord

        stored = UsageRecord.objects.count()
        orgs = UsageRecord.objects.values("organization_id").distinct().count()
        print(
            f"database: {connections['default'].vendor}, {stored:,} usage records over {orgs} organizations; "
            f"{args.users} users × {args.seconds:.0f} s on {org_slug}; {len(targets)} URLs; canary {canary}"
        )
        print(
            f"{'url':<28} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'err':>4} {'canary':>6} {'q idle':>6} {'q after':>7}"
        )
        for label, _path, _htmx in targets:
            values = tally.latencies.get(label, [])
            print(
                f"{label:<28} {len(values):>5} {statistics.median(values or [0]) * 1000:>8.0f} "
                f"{percentile(values, 0.95) * 1000:>8.0f} {tally.errors.get(label, 0):>4} "
                f"{tally.canary_hits.get(label, 0):>6} {idle[label]:>6} {after[label]:>7}"
            )
        print(
            f"overall: {requests} requests in {wall:.1f} s = {requests / wall:.1f} req/s; "
            f"p50 {statistics.median(all_latencies or [0]) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
            f"max {max(all_latencies or [0]) * 1000:.0f} ms"
        )
        checks = {
            "every URL answered (in-process, before and after)": not problems_before and not problems_after,
            "0 errors under load": errors == 0 and "login" not in tally.latencies,
            f"p95 ≤ {args.p95_ms:.0f} ms": p95 * 1000 <= args.p95_ms,
            "the canary org's own pages show the canary (the check can see a leak)": control,
            "no body contains the canary": not tally.canary_hits,
            "SQL queries per URL after load = idle": idle == after,
        }
        for name, passed in checks.items():
            print(f"{'ok  ' if passed else 'FAIL'} {name}")
        for problem in (problems_before + problems_after + tally.failures)[:20]:
            print("  ", problem)
        ok = all(checks.values())
    finally:
        connections.close_all()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
