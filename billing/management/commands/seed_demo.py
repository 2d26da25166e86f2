"""Seed the "Acme AI" demo organization from the provider simulator's world, through the real connectors.

Usage rows are read over HTTP from a simulator served by a child process on a free port (so it
generates pages on the other core while this process writes), with the same seed and anchor day as the long-running simulator that the stored account URLs point at, so the
natural keys match: when Celery later re-reads an overlapping window, those rows are "unchanged".

The organization lives in Asia/Shanghai: the world's busiest traffic and both CNY accounts (the
reseller gateway and DeepSeek) belong to a team in UTC+8, whose finance closes months on Beijing
days; the zone has no DST, so every demo day is 24 hours long.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import BalanceSnapshot, Budget, TopUp, TopUpSource, TopUpStatus
from billing.services.balances import balance_snapshots_store
from billing.services.topups import topups_sync
from projects.models import ApiKey, Membership, Organization, Project, ProviderAccount, Role
from usage.ingest import stream_state, usage_ingest_window
from usage.models import Stream, StreamState, UsageRecord
from usage.providers.base import AccountConfig
from usage.providers.process import ConnectorProcess
from usage.providers.registry import account_config, connector_class
from usage.services import rollup_rebuild
from usage.simulator.process import SimulatorProcess
from usage.simulator.world import DEFAULT_WORLD

ORG_SLUG = "acme-ai"
ORG_TIMEZONE = "Asia/Shanghai"
ROLES = (("admin", Role.ADMIN), ("finance", Role.FINANCE), ("owner", Role.OWNER), ("viewer", Role.VIEWER))
# Projects the demo "owner" user owns (the rest have no owner).
OWNED_PROJECTS = ("chat-app", "agents-lab")
BALANCE_EVERY = timedelta(hours=12)


class Command(BaseCommand):
    # `migrate` ran the system checks just before (make demo); seeding doesn't need them again.
    requires_system_checks: list[str] = []
    help = (
        "Seed the deterministic 'Acme AI' demo: users, projects, provider accounts pointing at the "
        "simulator, 90 days of usage ingested through the connectors, balances, top-ups and budgets."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password", default="quotaboard-demo", help="Password of the demo users.")
        parser.add_argument(
            "--simulator-url",
            default="http://127.0.0.1:8765",
            help="Base URL of the long-running simulator (manage.py simulate_providers) stored on the accounts.",
        )
        parser.add_argument("--days", type=int, default=90, help="Days of usage history (default 90).")
        parser.add_argument(
            "--seed", type=int, default=7, help="Simulator seed; must match simulate_providers."
        )
        parser.add_argument("--reset", action="store_true", help="Delete the demo organization first.")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        if options["reset"]:
            Organization.objects.filter(slug=ORG_SLUG).delete()
        if Organization.objects.filter(slug=ORG_SLUG).exists():
            self.stdout.write(f"Demo organization {ORG_SLUG!r} already exists: nothing to do (use --reset).")
            return
        if connection.vendor == "sqlite":
            # The demo database is disposable (a crash mid-seed is undone with --reset), so skip the
            # fsync SQLite makes at each WAL checkpoint (a third of the write time on a VM disk), and
            # give this one connection a page cache that holds the whole seeded database (~110 MB).
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA synchronous=OFF")
                cursor.execute("PRAGMA cache_size=-524288")
        now = timezone.now().replace(microsecond=0)
        start = now - timedelta(days=options["days"])
        # Started first: the child generates the world's history while the users are created.
        # Not warmed up front: the child generates history as the first reads ask for it, while
        # this process writes, instead of making it wait.
        sim = SimulatorProcess(seed=options["seed"], now=now, warm=False)
        sim.start_async()
        readers = ConnectorProcess()
        readers.start()
        try:
            org, accounts = self._tenancy(options["password"], options["simulator_url"].rstrip("/"))
            sim.wait_ready()
            # One transaction around every account's chunks: each index page reaches the WAL once
            # instead of once per chunk. All or nothing, like the seed itself.
            with transaction.atomic():
                rows = self._usage(accounts, sim, readers, start, now)
            self.stdout.write("Rebuilding rollups…")
            rollup_rebuild(organization=org)
            self._balances(accounts, sim, start, now)
            self._topups(accounts, sim, now)
        finally:
            readers.close()
            sim.stop()
        self._budgets(org, now)
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {org.name} ({ORG_SLUG}): {rows:,} usage rows over {options['days']} days "
                f"in {elapsed:.1f}s. Sign in as admin / finance / owner / viewer."
            )
        )

    @transaction.atomic
    def _tenancy(self, password: str, simulator_url: str) -> tuple[Organization, list[ProviderAccount]]:
        org = Organization.objects.create(
            name="Acme AI", slug=ORG_SLUG, timezone=ORG_TIMEZONE, currency="USD"
        )
        users = {}
        # One hash for the four users: they share the printed demo password, and each PBKDF2 hash
        # takes about half a second.
        hashed = make_password(password)
        for username, role in ROLES:
            user, _ = User.objects.get_or_create(
                username=username, defaults={"email": f"{username}@acme.example"}
            )
            user.password = hashed
            user.save(update_fields=["password"])
            Membership.objects.create(user=user, organization=org, role=role)
            users[role] = user
        projects = {
            p.slug: Project.objects.create(
                organization=org,
                slug=p.slug,
                name=p.name,
                environment=p.environment,
                owner=users[Role.OWNER] if p.slug in OWNED_PROJECTS else None,
            )
            for p in DEFAULT_WORLD.projects
        }
        accounts = []
        for world in DEFAULT_WORLD.accounts:
            account = ProviderAccount(
                organization=org,
                kind=world.kind,
                name=world.name,
                slug=world.slug,
                base_url=f"{simulator_url}/{world.slug}",
                newapi_user_id=world.newapi_user_id,
                quota_per_unit=world.quota_per_unit,
                currency=world.currency,
            )
            account.set_credential(world.credential)
            account.save()
            ApiKey.objects.bulk_create(
                ApiKey(
                    organization=org,
                    provider_account=account,
                    external_id=key.external_id,
                    name=key.name,
                    project=projects.get(key.project_slug) if key.project_slug else None,
                )
                for key in world.keys
            )
            accounts.append(account)
        return org, accounts

    def _config(self, account: ProviderAccount, sim: SimulatorProcess) -> AccountConfig:
        # Same account, same credential, but the seeding simulator's address.
        return replace(account_config(account), base_url=sim.account_url(account.slug))

    def _connector(self, account: ProviderAccount, sim: SimulatorProcess) -> Any:
        return connector_class(account.kind)(self._config(account, sim))

    def _usage(
        self,
        accounts: list[ProviderAccount],
        sim: SimulatorProcess,
        readers: ConnectorProcess,
        start: datetime,
        end: datetime,
    ) -> int:
        """Ingest each account's usage; its connector runs in ``readers`` so reading overlaps writing."""
        total = 0
        for account in accounts:
            if not connector_class(account.kind).has_usage:
                continue
            began = time.monotonic()
            connector = readers.connector(self._config(account, sim))
            try:
                run = usage_ingest_window(
                    account=account, start=start, end=end, refresh_rollups=False, connector=connector
                )
            finally:
                connector.close()
            if run.status != "success":
                raise RuntimeError(f"seeding {account.slug} failed: {run.error}")
            rows = run.rows_new + run.rows_updated + run.rows_unchanged
            total += rows
            self.stdout.write(
                f"  {account.slug:<15} {rows:>8,} rows, {run.pages:>5,} pages, {time.monotonic() - began:5.1f}s"
            )
        return total

    def _balances(
        self, accounts: list[ProviderAccount], sim: SimulatorProcess, start: datetime, now: datetime
    ) -> None:
        """Read each balance every 12 hours of the period by moving the simulator's clock."""
        readable = [a for a in accounts if connector_class(a.kind).has_balance]
        connectors = {a.pk: self._connector(a, sim) for a in readable}
        # One transaction for the whole history: a commit per snapshot was most of this step.
        with transaction.atomic():
            self._balance_history(readable, connectors, sim, start, now)
        self.stdout.write(
            f"  balance snapshots: {BalanceSnapshot.objects.filter(provider_account__in=readable).count():,}"
        )

    def _balance_history(
        self,
        readable: list[ProviderAccount],
        connectors: dict[int, Any],
        sim: SimulatorProcess,
        start: datetime,
        now: datetime,
    ) -> None:
        try:
            moment = start
            while moment <= now:
                sim.set_clock(moment)
                for account in readable:
                    readings = connectors[account.pk].fetch_balance()
                    balance_snapshots_store(account=account, readings=readings, taken_at=moment)
                moment += BALANCE_EVERY
            sim.set_clock(now)
            for account in readable:
                balance_snapshots_store(
                    account=account, readings=connectors[account.pk].fetch_balance(), taken_at=now
                )
                StreamState.objects.filter(pk=stream_state(account, Stream.BALANCE).pk).update(
                    cursor_at=now, last_success_at=now, last_run_at=now
                )
        finally:
            for connector in connectors.values():
                connector.close()

    def _topups(self, accounts: list[ProviderAccount], sim: SimulatorProcess, now: datetime) -> None:
        """New API top-ups come through the connector; the others from the simulator's own history."""
        for account in accounts:
            if connector_class(account.kind).has_topups:
                connector = self._connector(account, sim)
                try:
                    topups_sync(account=account, connector=connector)
                finally:
                    connector.close()
            status_map = {
                "success": TopUpStatus.CREDITED,
                "failed": TopUpStatus.FAILED,
                "pending": TopUpStatus.PENDING,
            }
            for topup in sim.topups(account.slug):
                TopUp.objects.get_or_create(
                    provider_account=account,
                    order_ref=topup.trade_no,
                    defaults={
                        "amount": topup.amount,
                        "currency": account.currency,
                        "status": status_map.get(topup.status, TopUpStatus.PENDING),
                        "source": TopUpSource.MANUAL,
                        "payment_method": topup.payment_method,
                        "created_at": topup.occurred_at,
                        "credited_at": topup.occurred_at if topup.status == "success" else None,
                    },
                )
        # OpenAI prepaid credits expire a year after purchase: one bought 340 days ago runs out in 25 days.
        openai = next(a for a in accounts if a.kind == "openai")
        bought = now - timedelta(days=340)
        TopUp.objects.get_or_create(
            provider_account=openai,
            order_ref="demo-openai-credit-2025",
            defaults={
                "amount": Decimal("500"),
                "currency": "USD",
                "status": TopUpStatus.CREDITED,
                "source": TopUpSource.MANUAL,
                "payment_method": "card",
                "created_at": bought,
                "credited_at": bought,
                "expires_at": bought + timedelta(days=365),
                "note": "Prepaid credit (expires one year after purchase)",
            },
        )
        # OpenAI and Anthropic expose no balance: their derived balance is these credits minus billed cost.
        anthropic = next(a for a in accounts if a.kind == "anthropic")
        for account, ref, amount, days_ago in (
            (openai, "demo-openai-credit-aug", Decimal("1000"), 75),
            (anthropic, "demo-anthropic-credit-aug", Decimal("1500"), 88),
            (anthropic, "demo-anthropic-credit-nov", Decimal("1200"), 18),
        ):
            bought = now - timedelta(days=days_ago)
            TopUp.objects.get_or_create(
                provider_account=account,
                order_ref=ref,
                defaults={
                    "amount": amount,
                    "currency": "USD",
                    "status": TopUpStatus.CREDITED,
                    "source": TopUpSource.MANUAL,
                    "payment_method": "card",
                    "created_at": bought,
                    "credited_at": bought,
                    "expires_at": bought + timedelta(days=365) if account.kind == "openai" else None,
                },
            )
        self.stdout.write(f"  top-ups: {TopUp.objects.filter(provider_account__in=accounts).count()}")

    def _budgets(self, org: Organization, now: datetime) -> None:
        """An organization budget with headroom, one per project, and one project already over this month."""
        month_start = now.astimezone(org.zoneinfo).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        spend = dict(
            UsageRecord.objects.filter(
                organization=org, occurred_at__gte=month_start.astimezone(UTC), currency="USD"
            )
            .values_list("project__slug")
            .annotate(total=Sum("cost"))
        )
        days_so_far = max(1, (now.astimezone(org.zoneinfo) - month_start).days + 1)
        total = sum((v for v in spend.values() if v), Decimal(0))
        monthly_org = _round_up(total / days_so_far * 31 * Decimal("1.3"))
        Budget.objects.create(
            organization=org, name="Acme AI monthly", monthly_amount=max(monthly_org, Decimal(100))
        )
        over = "agents-lab"
        for project in Project.objects.filter(organization=org):
            month_to_date = spend.get(project.slug) or Decimal(0)
            if project.slug == over:
                # Already past 100 % this month: the budget is 80 % of what it has spent so far.
                amount = _round_up(month_to_date * Decimal("0.8"))
            else:
                amount = _round_up(month_to_date / days_so_far * 31 * Decimal("1.5"))
            Budget.objects.create(
                organization=org,
                project=project,
                name=f"{project.name} monthly",
                monthly_amount=max(amount, Decimal(10)),
            )


def _round_up(amount: Decimal) -> Decimal:
    """Return the amount rounded up to whole currency units (budgets are set in round figures)."""
    return (-(-amount // 1)).quantize(Decimal(1))
