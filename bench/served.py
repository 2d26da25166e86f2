"""`make bench`, second half: the app as it is served, on the database bench/run.py built.

- every dashboard page, htmx partial and read API endpoint through django.test.Client: server time
  p50/p95, SQL queries, gzip bytes; usage panels and the spend endpoint beside the naive GROUP BY over
  raw rows for the same window and grouping, and DuckDB on the same rows;
- the first page load's weight: the overview's HTML and every static file it references, compressed;
- peak RSS of a real web process (``runserver --noreload``) serving every page, partial and endpoint
  over HTTP, and of a real Celery worker running one ingest task against the provider simulator.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.figures import Figure, percentiles, timed

if TYPE_CHECKING:
    from bench.run import RawBaselines, World
    from usage.simulator.process import SimulatorProcess

ROOT = Path(__file__).resolve().parent.parent
PANEL_TARGET = "≤ 100 ms; ≥ 15× faster"
PAGE_TARGET = "≤ 150 ms"
WORKER_TIMEOUT = 300  # seconds for the worker to start and finish its one ingest
# As tests/celery_worker.py starts one: the solo pool runs the task in the process we measure.
WORKER_COMMAND = [
    sys.executable,
    "-m",
    "celery",
    "-A",
    "config",
    "worker",
    "--pool",
    "solo",
    "-l",
    "info",
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
]


@dataclass
class Target:
    """One GET the app serves: what the bench times, and what the web process serves over HTTP."""

    kind: str  # page, htmx or api
    name: str
    path: str  # with its query string
    headers: dict[str, str] = field(default_factory=dict)
    # For usage panels and the spend endpoint: the raw-row query shape that answers the same question.
    baseline: dict[str, Any] | None = None
    target: str = ""


def _targets(world: World) -> list[Target]:
    """Every dashboard page, the htmx partials those pages load, and every read API endpoint, for bench-b."""
    from urllib.parse import urlencode

    from django.urls import reverse

    from projects.models import ApiKey, Project
    from usage.panels import PANELS

    org = world.orgs[1]
    project = Project.objects.get(organization=org, slug="project-0")
    key = ApiKey.objects.get(organization=org, name="key-00")
    htmx = {"HX-Request": "true"}
    explorer = reverse("usage_explorer", args=[org.slug])
    project_page = reverse("project_detail", args=[org.slug, project.slug])
    targets = [
        Target("page", name, reverse(name, args=[org.slug]), target=PAGE_TARGET)
        for name in (
            "overview",
            "usage_explorer",
            "project_list",
            "key_list",
            "data_sources",
            "balance_list",
            "budget_list",
            "month_review",
            "alert_list",
            "topup_list",
            "import_list",
        )
    ]
    targets += [
        Target("page", "project_detail", project_page, target=PAGE_TARGET),
        Target(
            "page", "key_detail", reverse("key_detail", args=[org.slug, key.public_id]), target=PAGE_TARGET
        ),
    ]
    # The explorer (and the project and key pages) load each panel with hx-trigger="load"; the 30-day
    # preset is the selector figures' window. The request log pages raw rows by index, the other
    # panels read rollups; each is set beside the same naive day x model query, scoped as it is.
    for name in PANELS:
        query = urlencode({"preset": "30d", "panel": name})
        targets.append(
            Target("htmx", f"explorer panel {name}", f"{explorer}?{query}", htmx, {}, PANEL_TARGET)
        )
        targets.append(
            Target(
                "htmx",
                f"project panel {name}",
                f"{project_page}?{query}",
                htmx,
                {"project_id": project.pk},
                PANEL_TARGET,
            )
        )
    # The partials a filter change, a month switch, a saved budget or a running sync swap in.
    targets += [
        Target("htmx", "explorer body", f"{explorer}?preset=30d", htmx),
        Target("htmx", "project list body", f"{reverse('project_list', args=[org.slug])}?preset=30d", htmx),
        Target("htmx", "key list body", f"{reverse('key_list', args=[org.slug])}?preset=30d", htmx),
        Target("htmx", "budgets panel", f"{reverse('budget_list', args=[org.slug])}?panel=budgets", htmx),
        Target("htmx", "month review body", reverse("month_review", args=[org.slug]), htmx),
        Target(
            "htmx",
            "data source card",
            f"{reverse('data_sources', args=[org.slug])}?account={world.accounts[1].slug}",
            htmx,
        ),
    ]
    # Read endpoints (the push endpoint is the "ingest via push API" figure); the default window is
    # the last 30 local days, like the panels'.
    for group in ("day", "project", "model", "key"):
        targets.append(
            Target(
                "api",
                f"GET /api/v1/spend?group_by={group}",
                f"/api/v1/spend?group_by={group}",
                baseline={
                    "groups": (group, "currency"),
                    "sums": ("cost", "requests", "input_tokens", "output_tokens"),
                },
            )
        )
    targets.append(Target("api", "GET /api/v1/balances", "/api/v1/balances"))
    return targets


def _api_token(org: Any) -> str:
    from projects.services import ingest_token_create

    _, secret = ingest_token_create(
        organization=org, name=f"bench read {uuid.uuid4().hex[:6]}", created_by=None
    )
    return secret


def bench_requests(world: World, figures: list[Figure], baselines: RawBaselines, runs: int = 15) -> None:
    """Time every page, htmx partial and read API endpoint in-process, each with its queries and gzip bytes."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(world.users[1])
    api_headers = {"Authorization": f"Bearer {_api_token(world.orgs[1])}"}
    for target in _targets(world):
        headers = api_headers if target.kind == "api" else target.headers
        samples = []
        for _ in range(runs):
            with CaptureQueriesContext(connection) as ctx:
                seconds, response = timed(partial(client.get, target.path, headers=headers))
            samples.append(seconds)
            assert response.status_code == 200, (target.name, response.status_code, response.content[:300])
        p50, p95 = percentiles(samples)
        extra: dict[str, Any] = {
            "p50_ms": p50 * 1000,
            "queries": len(ctx.captured_queries),
            "gzip_bytes": len(gzip.compress(response.content)),
        }
        baseline_name, baseline = "", None
        if target.baseline is not None:
            naive_p50, duck_p50 = baselines.p50s(**target.baseline)
            baseline_name, baseline = "naive GROUP BY raw p50", naive_p50 * 1000
            extra["duckdb_p50_ms"] = duck_p50 * 1000
            extra["x_faster_than_duckdb_p50"] = duck_p50 / p50
        label = {"page": "page", "htmx": "htmx", "api": "API"}[target.kind]
        figures.append(
            Figure(
                f"{label} {target.name} p95",
                p95 * 1000,
                "ms",
                baseline_name,
                baseline,
                target.target,
                extra,
                ratio_kind="baseline/value",
            )
        )


def bench_first_load(world: World, figures: list[Figure]) -> None:
    """Bytes a browser downloads for a first visit to the overview: its HTML as GZipMiddleware serves it,
    plus every stylesheet, script and icon the page references, gzipped at level 9 as whitenoise's
    collectstatic step stores them (the bench serves static files from the finders, uncompressed)."""
    from django.contrib.staticfiles import finders
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(world.users[1])
    response = client.get(reverse("overview", args=[world.orgs[1].slug]), headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200 and response.get("Content-Encoding") == "gzip", response.headers
    html = gzip.decompress(response.content).decode()
    sizes = {"overview HTML": len(response.content)}
    raw = {"overview HTML": len(html.encode())}
    for url in sorted(set(re.findall(r'(?:src|href)="/static/([^"?#]+)', html))):
        path = finders.find(url)
        assert path, f"the overview references /static/{url}, which no finder serves"
        data = Path(str(path)).read_bytes()
        sizes[url] = len(gzip.compress(data, compresslevel=9, mtime=0))
        raw[url] = len(data)
    figures.append(
        Figure(
            "first page load, overview + static (gzip)",
            sum(sizes.values()) / 1024,
            "kB",
            "uncompressed",
            sum(raw.values()) / 1024,
            extra={f"{name} gzip_bytes": size for name, size in sizes.items()},
        )
    )


def _peak_rss_mb(pid: int) -> dict[int, float]:
    """VmHWM (peak resident set) in MB of ``pid`` and each of its descendants still alive."""
    peaks: dict[int, float] = {}
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue  # it ended meanwhile
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            peaks[current] = int(match.group(1)) / 1024
        pending += [int(child) for child in children]
    return peaks


def _child_env() -> dict[str, str]:
    """The bench's own settings (its database, var dir, no collectstatic) for a child process."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "PYTHONPATH": str(ROOT),
    }


def bench_web_rss(world: World, figures: list[Figure], rounds: int = 3) -> None:
    """Peak RSS of a real web process after serving every page, partial and API endpoint ``rounds`` times."""
    import httpx
    from django.conf import settings
    from django.test import Client

    from bench.webserver import web_server

    client = Client()
    client.force_login(world.users[1])  # the session row is committed; the server reads the same database
    cookies = {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}
    api_headers = {"Authorization": f"Bearer {_api_token(world.orgs[1])}"}
    targets = _targets(world)
    with tempfile.TemporaryDirectory() as tmp, web_server(_child_env(), Path(tmp) / "server.log") as base:
        server_pid = _server_pid(base)
        served = 0
        with httpx.Client(base_url=base, cookies=cookies, timeout=120) as http:
            for _ in range(rounds):
                for target in targets:
                    headers = api_headers if target.kind == "api" else target.headers
                    response = http.get(target.path, headers={**headers, "Accept-Encoding": "gzip"})
                    assert response.status_code == 200, (target.name, response.status_code)
                    served += 1
        peaks = _peak_rss_mb(server_pid)
    figures.append(
        Figure(
            "peak RSS of the web process",
            max(peaks.values()),
            "MB",
            extra={"requests": served, "targets": len(targets), "processes": len(peaks)},
        )
    )


def _server_pid(base: str) -> int:
    """The pid of web_server's child: the one of our children started with ``base``'s host:port."""
    address = base.removeprefix("http://")
    for pid in _peak_rss_mb(os.getpid()):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"runserver" in command and address.encode() in command:
            return pid
    raise RuntimeError(f"no child process serves {base}")


def simulator_account(org: Any, sim: SimulatorProcess, slug: str = "reseller") -> Any:
    """Save a provider account of ``org`` reading the simulator's account ``slug`` (default: the busiest
    New API gateway account)."""
    from projects.models import ProviderAccount
    from usage.simulator.world import DEFAULT_WORLD

    spec = DEFAULT_WORLD.account(slug)
    account = ProviderAccount(
        organization=org,
        kind=spec.kind,
        name=spec.name,
        slug=f"sim-{slug}",
        base_url=sim.account_url(slug),
        newapi_user_id=spec.newapi_user_id,
        quota_per_unit=spec.quota_per_unit,
        currency=spec.currency,
    )
    account.set_credential(spec.credential)
    account.save()
    return account


def bench_worker_rss(figures: list[Figure], sim: SimulatorProcess, days: int) -> None:
    """Peak RSS of a real Celery worker (solo pool, the embedded file-system broker in the bench's var
    dir) that runs one ingest_account_usage task: the simulator's busiest New API account, last ``days``
    days. Written to a throwaway organization, deleted afterwards."""
    from django.conf import settings

    from config.celery import app as celery_app
    from projects.models import Organization
    from usage.models import RunStatus
    from usage.tasks import ingest_account_usage

    if not settings.CELERY_BROKER_URL.startswith("filesystem"):
        raise RuntimeError(
            f"the worker figure needs the file-system broker, not {settings.CELERY_BROKER_URL}"
        )
    org = Organization.objects.create(name="Bench worker", slug=f"bench-worker-{uuid.uuid4().hex[:6]}")
    account = simulator_account(org, sim)
    queue = f"qb-bench-{uuid.uuid4().hex[:8]}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            log_path = Path(tmp) / "worker.log"
            with open(log_path, "w") as log:
                worker = subprocess.Popen(
                    [*WORKER_COMMAND, "-Q", queue],
                    cwd=ROOT,
                    env=_child_env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                start = sim.now - timedelta(days=days)
                celery_app.send_task(
                    ingest_account_usage.name,
                    args=(account.pk, start.isoformat(), sim.now.isoformat()),
                    queue=queue,
                )
                run = _wait_for_run(account.pk, worker)
                peaks = _peak_rss_mb(worker.pid)
            finally:
                worker.terminate()
                worker.wait(timeout=30)
            if run is None or run.status != RunStatus.SUCCESS:
                tail = log_path.read_text()[-2000:]
                raise RuntimeError(f"the worker's ingest did not succeed ({run and run.status}):\n{tail}")
        figures.append(
            Figure(
                "peak RSS of the worker process",
                max(peaks.values()),
                "MB",
                extra={
                    "rows": run.rows_new,
                    "days": days,
                    "pool": "solo",
                    "processes": len(peaks),
                },
            )
        )
    finally:
        org.delete()  # its account, runs, keys, records and rollups go with it


def _wait_for_run(account_id: int, worker: subprocess.Popen[bytes]) -> Any:
    """Wait until the account's ingest run has finished (or the worker died, or WORKER_TIMEOUT passed)."""
    from usage.models import IngestRun, RunStatus

    deadline = time.monotonic() + WORKER_TIMEOUT
    while time.monotonic() < deadline and worker.poll() is None:
        run = IngestRun.objects.filter(provider_account_id=account_id).order_by("-started_at").first()
        if run is not None and run.status != RunStatus.RUNNING:
            return run
        time.sleep(0.5)
    return None


def not_measured(figures: list[Figure], name: str, reason: Exception) -> None:
    """Record that a figure could not be measured, and why, so the rest of the run still reports."""
    why = f"{type(reason).__name__}: {reason}".splitlines()[0][:160]
    figures.append(Figure(name, 0.0, "", target=f"not measured: {why}"))
