"""Usage writes: the one upsert path every ingest uses, pricing at ingest, and rollup upkeep."""

from __future__ import annotations

import hashlib
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from operator import itemgetter
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.models import Case, Max, Min, Q, Sum, Value, When
from django.db.models.functions import TruncDate, TruncHour
from django.utils import timezone

from projects.models import ApiKey, Organization, Project, ProviderAccount
from projects.money import QUANTUM, STORAGE_ROUNDING, MoneyField, to_units

from .models import CostSource, ModelPrice, RecordSource, UsageDaily, UsageHourly, UsageRecord
from .providers.base import UsageRow

MILLION = Decimal(1_000_000)
UPSERT_BATCH = 2000
# Batches at least this large take the COPY path on PostgreSQL; smaller ones are not worth a temp table.
COPY_THRESHOLD = 200
COPY_BATCH = 20_000
# The order of the values the upsert builds for each row: every stored column but the primary key and
# ``ingested_at`` (the writers stamp that). A test checks it covers UsageRecord's columns exactly.
CANDIDATE_COLUMNS = (
    "organization_id",
    "project_id",
    "api_key_id",
    "provider_account_id",
    "source",
    "occurred_at",
    "bucket_seconds",
    "model",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "requests",
    "cost",
    "currency",
    "cost_source",
    "price_id",
    "raw_quota",
    "status",
    "error_code",
    "latency_ms",
    "dedupe_key",
)
# Fields that an upsert may change; comparing them decides "updated" vs "unchanged". The rest say
# whose row it is (organization, account, source) and which (the dedupe key).
UPDATABLE_FIELDS = tuple(
    name
    for name in CANDIDATE_COLUMNS
    if name not in {"organization_id", "provider_account_id", "source", "dedupe_key"}
)
_UPDATABLE_INDEXES = tuple(CANDIDATE_COLUMNS.index(name) for name in UPDATABLE_FIELDS)
_OCCURRED_AT = CANDIDATE_COLUMNS.index("occurred_at")


@dataclass
class UpsertResult:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    days: set[date] = field(default_factory=set)
    # Days whose rollups must be recomputed from raw rows: all of ``days``, except where the writer
    # already added the new rows' sums to the rollups (PostgreSQL, when rollups are refreshed).
    recompute_days: set[date] = field(default_factory=set)

    def add(self, other: UpsertResult) -> None:
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.days |= other.days
        self.recompute_days |= other.recompute_days


def dedupe_key_for(namespace: str, natural_key: str) -> str:
    """Return the stored dedupe key: sha256 of the account (or push source) namespace and natural key."""
    return hashlib.sha256(f"{namespace}\x1f{natural_key}".encode()).hexdigest()


def local_day(moment: datetime, tz: zoneinfo.ZoneInfo) -> date:
    return moment.astimezone(tz).date()


def local_day_bounds(day_first: date, day_last: date, tz: zoneinfo.ZoneInfo) -> tuple[datetime, datetime]:
    """Return the UTC instants [start of day_first, start of the day after day_last) in zone tz."""
    start = datetime.combine(day_first, time.min, tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day_last + timedelta(days=1), time.min, tzinfo=tz).astimezone(UTC)
    return start, end


class PriceBook:
    """Effective-dated prices for one provider kind, loaded once per batch (no query per row)."""

    def __init__(self, provider_kind: str, models: Iterable[str]) -> None:
        self.by_model: dict[str, list[ModelPrice]] = {}
        for price in ModelPrice.objects.filter(provider_kind=provider_kind, model__in=set(models)).order_by(
            "model", "-effective_from"
        ):
            self.by_model.setdefault(price.model, []).append(price)

    def price_for(self, model: str, day: date) -> ModelPrice | None:
        for price in self.by_model.get(model, []):
            if price.applies_on(day):
                return price
        return None


def cost_from_price(row: UsageRow, price: ModelPrice) -> Decimal:
    """Return the list-price cost of a row: uncached input, cache read, cache write and output, per 1M.

    Cache prices fall back to the input price when the price row has none (billed as plain input).
    """
    uncached = row.input_tokens - row.cache_read_tokens - row.cache_write_tokens
    cache_read_price = price.cache_read_per_1m if price.cache_read_per_1m is not None else price.input_per_1m
    cache_write_price = (
        price.cache_write_per_1m if price.cache_write_per_1m is not None else price.input_per_1m
    )
    tokens_cost = (
        uncached * price.input_per_1m
        + row.cache_read_tokens * cache_read_price
        + row.cache_write_tokens * cache_write_price
        + row.output_tokens * price.output_per_1m
    ) / MILLION
    per_request = (price.per_request or Decimal(0)) * row.requests
    return (tokens_cost + per_request).quantize(QUANTUM, rounding=STORAGE_ROUNDING)


def _resolve_keys(
    *, organization: Organization, account: ProviderAccount | None, rows: Sequence[UsageRow]
) -> dict[str, ApiKey]:
    """Return ApiKey by external id, creating keys seen for the first time (unassigned)."""
    wanted = {row.key_external_id: row.key_name or row.key_external_id for row in rows if row.key_external_id}
    if not wanted:
        return {}
    existing = {
        key.external_id: key
        for key in ApiKey.objects.filter(
            organization=organization, provider_account=account, external_id__in=wanted
        )
    }
    missing = [
        ApiKey(organization=organization, provider_account=account, external_id=ext, name=name[:200])
        for ext, name in wanted.items()
        if ext not in existing
    ]
    if missing:
        ApiKey.objects.bulk_create(missing, ignore_conflicts=True)
        existing.update(
            {
                key.external_id: key
                for key in ApiKey.objects.filter(
                    organization=organization,
                    provider_account=account,
                    external_id__in=[k.external_id for k in missing],
                )
            }
        )
    return existing


@transaction.atomic
def usage_rows_upsert(
    *,
    organization: Organization,
    rows: Sequence[UsageRow],
    account: ProviderAccount | None = None,
    source: str = RecordSource.CONNECTOR,
    namespace: str | None = None,
    refresh_rollups: bool = True,
    provider_kind: str | None = None,
) -> UpsertResult:
    """Store rows idempotently by natural key and refresh the rollups of every local day they touch.

    Returns counts of new, updated and unchanged rows. Unchanged rows cause no write at all, so
    re-reading an overlapping window is cheap; a revised bucket updates in place. Rows and rollups
    commit together, so dashboards never see one without the other.
    Without an account, rows lacking a cost are priced from ``provider_kind``'s prices (if given).
    """
    result = UpsertResult()
    if not rows:
        return result
    tz = organization.zoneinfo
    ns = namespace or (f"account:{account.pk}" if account else f"org:{organization.pk}:{source}")
    keys = _resolve_keys(organization=organization, account=account, rows=rows)
    project_ids_by_slug: dict[str, int] = {}
    slugs = {row.project_slug for row in rows if row.project_slug}
    if slugs:
        project_ids_by_slug = dict(
            Project.objects.filter(organization=organization, slug__in=slugs).values_list("slug", "id")
        )
    # Push and import rows have no account; their ``provider_kind`` says whose price list applies.
    price_kind = account.kind if account else provider_kind
    prices = PriceBook(price_kind, {row.model for row in rows if row.cost is None}) if price_kind else None

    # PostgreSQL takes whole batches through COPY + INSERT ... ON CONFLICT (see _write_postgres);
    # other databases compare against stored values in Python and bulk-upsert only what changed.
    use_copy = connection.vendor == "postgresql" and len(rows) >= COPY_THRESHOLD
    if use_copy and refresh_rollups:
        # The COPY writer adds new rows to the rollups as it goes: serialise with recomputes and
        # other writers of this organization's rollups (the lock rollup_refresh_days takes too).
        Organization.objects.select_for_update().filter(pk=organization.pk).first()
    batch_size = COPY_BATCH if use_copy else UPSERT_BATCH
    org_id = organization.pk
    account_id = account.pk if account else None
    for offset in range(0, len(rows), batch_size):
        chunk = rows[offset : offset + batch_size]
        # Plain tuples in CANDIDATE_COLUMNS order: at a million rows, building a dict per row and
        # reading it back column by column was a tenth of the ingest time.
        candidates: dict[str, tuple[Any, ...]] = {}
        for row in chunk:
            key = keys.get(row.key_external_id)
            project_id = project_ids_by_slug.get(row.project_slug) or (key.project_id if key else None)
            cost, cost_source, price = _cost_for(row, prices, tz)
            dedupe_key = dedupe_key_for(ns, row.natural_key)
            # A natural key seen twice in one batch: the later row is the revision.
            candidates[dedupe_key] = (
                org_id,
                project_id,
                key.pk if key else None,
                account_id,
                source,
                row.occurred_at,
                row.bucket_seconds,
                row.model[:200],
                row.input_tokens,
                row.cache_read_tokens,
                row.cache_write_tokens,
                row.output_tokens,
                row.reasoning_tokens,
                row.requests,
                cost,
                row.currency,
                cost_source,
                price.pk if price else None,
                row.raw_quota,
                row.status,
                row.error_code[:64],
                row.latency_ms,
                dedupe_key,
            )
        result.unchanged += len(chunk) - len(candidates)
        if use_copy:
            result.add(_write_postgres(organization, candidates, rollup_delta=refresh_rollups))
        else:
            result.add(_write_generic(organization, candidates))

    if refresh_rollups and result.recompute_days:
        rollup_refresh_days(organization=organization, days=result.recompute_days)
    _touch_keys_last_used(keys.values(), rows)
    return result


def _record_fields() -> list[models.Field[Any, Any]]:
    """UsageRecord's stored fields in CANDIDATE_COLUMNS order, then ``ingested_at``."""
    meta = UsageRecord._meta
    by_attname = {f.attname: f for f in meta.concrete_fields}
    return [by_attname[name] for name in CANDIDATE_COLUMNS] + [meta.get_field("ingested_at")]


def _write_generic(organization: Organization, candidates: dict[str, tuple[Any, ...]]) -> UpsertResult:
    """Compare candidates with stored rows and bulk-upsert only the new and changed ones."""
    tz = organization.zoneinfo
    result = UpsertResult()
    existing = {
        values[0]: values[1:]
        for values in UsageRecord.objects.filter(
            organization=organization, dedupe_key__in=list(candidates)
        ).values_list("dedupe_key", *UPDATABLE_FIELDS)
    }
    updatable = itemgetter(*_UPDATABLE_INDEXES)
    old_occurred_at = UPDATABLE_FIELDS.index("occurred_at")
    to_write: list[tuple[Any, ...]] = []
    for dedupe_key, values in candidates.items():
        old = existing.get(dedupe_key)
        if old is None:
            result.new += 1
        elif updatable(values) == old:
            result.unchanged += 1
            continue
        else:
            result.updated += 1
            result.days.add(local_day(old[old_occurred_at], tz))
        result.days.add(local_day(values[_OCCURRED_AT], tz))
        to_write.append(values)
    result.recompute_days = set(result.days)
    if to_write and connection.vendor == "sqlite":
        _sqlite_executemany_upsert(to_write)
    elif to_write:
        UsageRecord.objects.bulk_create(
            [UsageRecord(**dict(zip(CANDIDATE_COLUMNS, values, strict=True))) for values in to_write],
            update_conflicts=True,
            unique_fields=["organization", "dedupe_key"],
            update_fields=[name.removesuffix("_id") for name in UPDATABLE_FIELDS],
        )
    return result


def _sqlite_executemany_upsert(rows: list[tuple[Any, ...]]) -> None:
    """Upsert with one prepared INSERT ... ON CONFLICT run through sqlite3's executemany.

    Why not bulk_create: Django caps SQLite statements at 999 parameters, so a 2,000-row batch
    becomes ~80 statements whose SQL is assembled in Python; executemany binds rows in C and
    seeds the demo's 250k rows about three times faster. Values still go through each field's
    get_db_prep_save, so MoneyField units and datetimes are stored exactly as the ORM stores them.
    """
    table = UsageRecord._meta.db_table
    fields = _record_fields()
    columns = [str(f.column) for f in fields]
    by_attname = {f.attname: str(f.column) for f in fields}
    updates = ", ".join(f"{by_attname[name]} = excluded.{by_attname[name]}" for name in UPDATABLE_FIELDS)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT (organization_id, dedupe_key) DO UPDATE SET {updates}, ingested_at = excluded.ingested_at"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, list(_db_rows(fields, rows, timezone.now())))


def _db_rows(
    fields: Sequence[models.Field[Any, Any]], rows: Iterable[Sequence[Any]], now: datetime
) -> Iterable[list[Any]]:
    """Yield each row's column values as the database stores them, in ``fields`` order.

    ``fields`` is ``_record_fields()``: each row holds the values of all but the last (``ingested_at``,
    stamped with ``now``). Plain columns (ints, strings, None) pass through untouched; money becomes
    integer units and aware times go straight to the backend's adapter, as ``get_db_prep_save``
    would. Per-row Python here was most of the ingest time, so the converters are chosen once per
    batch.
    """
    db = connections[DEFAULT_DB_ALIAS]  # the real wrapper: the proxy costs a lookup per call
    *value_fields, stamp_field = fields
    assert stamp_field.attname == "ingested_at", stamp_field
    stamp = stamp_field.get_db_prep_save(now, db)
    plain = (models.CharField, models.IntegerField, models.ForeignKey)
    converters: list[tuple[int, Callable[[Any], Any]]] = []
    for index, f in enumerate(value_fields):
        if isinstance(f, MoneyField):
            converters.append((index, _money_units))
        elif isinstance(f, models.DateTimeField):
            converters.append((index, partial(_aware_or_prepped, f, db.ops.adapt_datetimefield_value, db)))
        elif not isinstance(f, plain):
            converters.append((index, partial(f.get_db_prep_save, connection=db)))
    for values in rows:
        row = list(values)
        row.append(stamp)
        for index, convert in converters:
            row[index] = convert(row[index])
        yield row


def _money_units(value: Any) -> int | None:
    """MoneyField.get_prep_value without the field lookup: None and int units pass, amounts convert."""
    if value is None or isinstance(value, int):
        return value
    if type(value) is Decimal and value.is_finite():
        # to_units' own path, minus its type checks: this runs once per ingested row.
        return int(value.quantize(QUANTUM, rounding=STORAGE_ROUNDING).scaleb(10))
    return to_units(value)


def _aware_or_prepped(f: models.Field[Any, Any], adapt: Callable[[Any], Any], db: Any, value: Any) -> Any:
    """An aware datetime goes straight to the backend's adapter (PostgreSQL: as given; SQLite: UTC
    text), which is what ``get_db_prep_save`` ends in; anything else takes the ORM's whole path."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return adapt(value)
    return f.get_db_prep_save(value, db)


STAGE_TABLE = "qb_usage_stage"


def _write_postgres(
    organization: Organization, candidates: dict[str, tuple[Any, ...]], *, rollup_delta: bool = False
) -> UpsertResult:
    """Upsert a batch with COPY into a temporary table and one INSERT ... ON CONFLICT DO UPDATE.

    Raw SQL because the ORM has neither COPY nor a conditional ON CONFLICT update. Staged rows
    identical to the stored ones are filtered out by one join before the INSERT (no lock taken on
    the stored rows), so re-reading stored rows writes nothing and the INSERT only sees real
    changes; its WHERE IS DISTINCT FROM still guards against a concurrent writer. RETURNING (xmax = 0)
    tells inserted rows from updated ones; days come back grouped in SQL (a few rows, not one per
    record), in the same zone arithmetic the rollups use.

    With ``rollup_delta`` the same statement adds the inserted rows' sums to the daily and hourly
    rollups (ON CONFLICT ... DO UPDATE SET x = x + EXCLUDED.x), so a day that only gained rows needs
    no recompute; days with updated or moved rows land in ``recompute_days`` and are recomputed
    whole, which also absorbs any delta added to them. Callers hold the organization's row lock.
    """
    result = UpsertResult()
    table = UsageRecord._meta.db_table
    fields = _record_fields()
    column_by_attname = {f.attname: str(f.column) for f in fields}
    column_list = ", ".join(column_by_attname.values())
    updatable = [column_by_attname[name] for name in UPDATABLE_FIELDS]
    tzname = organization.zoneinfo.key
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} AS SELECT {column_list} FROM {table} WITH NO DATA"
        )
        cursor.execute(f"TRUNCATE {STAGE_TABLE}")
        raw = cursor.connection  # psycopg connection: COPY is not in the DB-API
        with raw.cursor().copy(f"COPY {STAGE_TABLE} ({column_list}) FROM STDIN") as copy:
            write_row = copy.write_row
            for row in _db_rows(fields, candidates.values(), now):
                write_row(row)
        stored_tuple = ", ".join(f"r.{c}" for c in updatable)
        staged_tuple = ", ".join(f"s.{c}" for c in updatable)
        assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in [*updatable, "ingested_at"])
        old_tuple = ", ".join(f"{table}.{c}" for c in updatable)
        new_tuple = ", ".join(f"EXCLUDED.{c}" for c in updatable)
        returning = "(xmax = 0) AS inserted, organization_id, dedupe_key, occurred_at"
        deltas = ""
        params: list[Any] = []
        if rollup_delta:
            returning = f"(xmax = 0) AS inserted, {column_list}"
            deltas, params = _rollup_delta_sql(organization)
        # The INSERT reads only staged rows that are new or differ from the stored ones (one join;
        # rows equal to the stored ones never reach it, so re-reading stored rows locks and writes
        # nothing). Kind 0/1: inserted/updated rows per local day. Kind 2: the old day of updated
        # rows that moved in time, which must be recomputed too; reading the table in the same
        # statement sees it as it was before the INSERT, so r holds the old values.
        cursor.execute(
            f"WITH w AS (INSERT INTO {table} ({column_list})"
            f" SELECT {', '.join(f's.{c}' for c in column_by_attname.values())}"
            f" FROM {STAGE_TABLE} s LEFT JOIN {table} r"
            " ON r.organization_id = s.organization_id AND r.dedupe_key = s.dedupe_key"
            f" WHERE r.id IS NULL OR ({stored_tuple}) IS DISTINCT FROM ({staged_tuple})"
            f" ON CONFLICT (organization_id, dedupe_key) DO UPDATE SET {assignments}"
            f" WHERE ({old_tuple}) IS DISTINCT FROM ({new_tuple})"
            f" RETURNING {returning}){deltas}"
            " SELECT CASE WHEN inserted THEN 0 ELSE 1 END, (occurred_at AT TIME ZONE %s)::date, count(*)"
            " FROM w GROUP BY 1, 2"
            f" UNION ALL SELECT 2, (r.occurred_at AT TIME ZONE %s)::date, 0 FROM w JOIN {table} r"
            " ON r.organization_id = w.organization_id AND r.dedupe_key = w.dedupe_key"
            " WHERE NOT w.inserted AND r.occurred_at <> w.occurred_at GROUP BY 2",
            [*params, tzname, tzname],
        )
        for kind, day, count in cursor.fetchall():
            result.days.add(day)
            if kind == 0:
                result.new += count
                if not rollup_delta:
                    result.recompute_days.add(day)
            else:
                result.updated += count
                result.recompute_days.add(day)
    result.unchanged = len(candidates) - result.new - result.updated
    return result


def _rollup_delta_sql(organization: Organization) -> tuple[str, list[Any]]:
    """Return the CTEs that add the inserted rows of CTE ``w`` to the daily and hourly rollups.

    Grouping matches ``_refresh_daily``/``_refresh_hourly`` exactly (local day in the organization's
    zone, UTC hour), and the conflict targets are the rollups' unique indexes, so adding sums here
    equals recomputing the day from raw rows.
    """
    daily = UsageDaily._meta.db_table
    hourly = UsageHourly._meta.db_table
    sums = [column for column, _ in ROLLUP_SUMS]
    sum_exprs = [
        "SUM(input_tokens)",
        "SUM(cache_read_tokens)",
        "SUM(cache_write_tokens)",
        "SUM(output_tokens)",
        "SUM(reasoning_tokens)",
        "SUM(requests)",
        "SUM(cost)",
        f"SUM(CASE WHEN cost_source = '{CostSource.UNPRICED}' THEN requests ELSE 0 END)",
    ]
    add = ", ".join(f"{c} = {{table}}.{c} + EXCLUDED.{c}" for c in sums)
    daily_dims = "project_id, api_key_id, provider_account_id, model, status, error_code, currency"
    sql = (
        f", d AS (INSERT INTO {daily} (organization_id, day, {daily_dims}, {', '.join(sums)})"
        f" SELECT organization_id, (occurred_at AT TIME ZONE %s)::date, {daily_dims}, {', '.join(sum_exprs)}"
        f" FROM w WHERE inserted GROUP BY organization_id, 2, {daily_dims}"
        " ON CONFLICT (organization_id, day, COALESCE(project_id, 0), COALESCE(api_key_id, 0),"
        " COALESCE(provider_account_id, 0), model, status, error_code, currency)"
        f" DO UPDATE SET {add.format(table=daily)})"
        f", h AS (INSERT INTO {hourly} (organization_id, hour, model, status, currency, {', '.join(sums)})"
        " SELECT organization_id, DATE_TRUNC('hour', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',"
        f" model, status, currency, {', '.join(sum_exprs)}"
        " FROM w WHERE inserted GROUP BY organization_id, 2, model, status, currency"
        " ON CONFLICT (organization_id, hour, model, status, currency)"
        f" DO UPDATE SET {add.format(table=hourly)})"
    )
    return sql, [organization.zoneinfo.key]


def _cost_for(
    row: UsageRow, prices: PriceBook | None, tz: zoneinfo.ZoneInfo
) -> tuple[Decimal, str, ModelPrice | None]:
    if row.cost is not None:
        return row.cost, CostSource.PROVIDER, None
    price = prices.price_for(row.model, local_day(row.occurred_at, tz)) if prices else None
    if price is None:
        return Decimal(0), CostSource.UNPRICED, None
    return cost_from_price(row, price), CostSource.PRICE, price


def _touch_keys_last_used(keys: Iterable[ApiKey], rows: Sequence[UsageRow]) -> None:
    latest: dict[str, datetime] = {}
    for row in rows:
        if row.key_external_id and (
            row.key_external_id not in latest or row.occurred_at > latest[row.key_external_id]
        ):
            latest[row.key_external_id] = row.occurred_at
    for key in keys:
        seen = latest.get(key.external_id)
        if seen and (key.last_used_at is None or seen > key.last_used_at):
            ApiKey.objects.filter(pk=key.pk).filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=seen)
            ).update(last_used_at=seen)


def _rollup_sums() -> dict[str, Sum]:
    return {
        "sum_input": Sum("input_tokens"),
        "sum_cache_read": Sum("cache_read_tokens"),
        "sum_cache_write": Sum("cache_write_tokens"),
        "sum_output": Sum("output_tokens"),
        "sum_reasoning": Sum("reasoning_tokens"),
        "sum_requests": Sum("requests"),
        "sum_cost": Sum("cost"),
        "sum_unpriced": Sum(Case(When(cost_source=CostSource.UNPRICED, then="requests"), default=Value(0))),
    }


def rollup_refresh_days(*, organization: Organization, days: Iterable[date]) -> int:
    """Recompute the daily and hourly rollups for the given local days from raw records.

    Returns the number of daily rollup rows written. Idempotent: delete-and-recompute inside one
    transaction, serialised per organization by a row lock (PostgreSQL; SQLite serialises writers).
    """
    day_set = sorted(set(days))
    if not day_set:
        return 0
    tz = organization.zoneinfo
    written = 0
    with transaction.atomic():
        Organization.objects.select_for_update().filter(pk=organization.pk).first()
        if connection.vendor == "postgresql":
            # The GROUP BY estimates ~one group per row, so at the default 4 MB PostgreSQL sorts
            # (spilling to disk, collation compares) instead of hashing the few hundred real groups:
            # twice the time. SET LOCAL ends with the transaction.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL work_mem = '64MB'")
        # Contiguous runs of days become one range query each.
        for first, last in _contiguous_runs(day_set):
            start, end = local_day_bounds(first, last, tz)
            written += _refresh_daily(organization, first, last, start, end)
            # Hours are UTC; widen to whole hours so half-hour zones recompute complete buckets.
            hour_start = start.replace(minute=0, second=0, microsecond=0)
            hour_end = (
                end
                if end.minute == 0 and end.second == 0
                else end.replace(minute=0, second=0) + timedelta(hours=1)
            )
            _refresh_hourly(organization, hour_start, hour_end)
    return written


def _contiguous_runs(days: list[date]) -> list[tuple[date, date]]:
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


ROLLUP_SUMS = (
    ("input_tokens", "sum_input"),
    ("cache_read_tokens", "sum_cache_read"),
    ("cache_write_tokens", "sum_cache_write"),
    ("output_tokens", "sum_output"),
    ("reasoning_tokens", "sum_reasoning"),
    ("requests", "sum_requests"),
    ("cost", "sum_cost"),
    ("unpriced_requests", "sum_unpriced"),
)


def _insert_grouped(
    model: type[models.Model], organization: Organization, dims: Sequence[tuple[str, str]], grouped: Any
) -> int:
    """INSERT INTO the rollup table the rows of the grouped queryset, without a round trip through Python.

    ``dims`` pairs each rollup column with the grouped query's output name. The ORM compiles the
    GROUP BY (same zone arithmetic as every selector, on SQLite and PostgreSQL); wrapping it in
    INSERT ... SELECT keeps the rows in the database — building and bulk-creating model
    instances was most of a rollup refresh. Returns the number of rows inserted.
    """
    sql, params = grouped.query.sql_with_params()
    columns = ["organization_id", *(column for column, _ in dims), *(column for column, _ in ROLLUP_SUMS)]
    select = [
        "%s",
        *(f"g.{alias}" for _, alias in dims),
        *(f"COALESCE(g.{alias}, 0)" for _, alias in ROLLUP_SUMS),
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) SELECT {', '.join(select)} FROM ({sql}) g",
            [organization.pk, *params],
        )
        return max(int(cursor.rowcount), 0)


def _refresh_daily(
    organization: Organization, first: date, last: date, start: datetime, end: datetime
) -> int:
    UsageDaily.objects.filter(organization=organization, day__gte=first, day__lte=last).delete()
    if connection.vendor != "sqlite":
        day = TruncDate("occurred_at", tzinfo=organization.zoneinfo)
        return _insert_grouped(
            UsageDaily, organization, DAILY_DIMS, _daily_grouped(organization, start, end, day)
        )
    # SQLite has no time zones: Django converts every row's time in a Python function, which was
    # most of a rebuild. One statement per local day, bounded by that day's UTC start and end
    # (computed here, DST included), needs no conversion at all.
    written = 0
    day_start = start
    for offset in range((last - first).days + 1):
        local = first + timedelta(days=offset)
        day_end = local_day_bounds(local, local, organization.zoneinfo)[1]
        grouped = _daily_grouped(
            organization, day_start, day_end, Value(local, output_field=models.DateField())
        )
        written += _insert_grouped(UsageDaily, organization, DAILY_DIMS, grouped)
        day_start = day_end
    return written


DAILY_DIMS = [
    ("day", "local_day"),
    ("project_id", "project_id"),
    ("api_key_id", "api_key_id"),
    ("provider_account_id", "provider_account_id"),
    ("model", "model"),
    ("status", "status"),
    ("error_code", "error_code"),
    ("currency", "currency"),
]


def _daily_grouped(organization: Organization, start: datetime, end: datetime, day: Any) -> Any:
    return (
        UsageRecord.objects.filter(organization=organization, occurred_at__gte=start, occurred_at__lt=end)
        .annotate(local_day=day)
        .values(*(alias for _, alias in DAILY_DIMS))
        .annotate(**_rollup_sums())
        .order_by()
    )


class UtcHour(TruncHour):
    """The UTC hour a stored time falls in; on SQLite a substring of the stored UTC text.

    Why: on SQLite, TruncHour runs a Python function per row (parsing the text back to a datetime).
    SQLite stores 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC, so the hour is its first 13 characters.
    """

    def __init__(self, expression: str) -> None:
        super().__init__(expression, tzinfo=UTC)

    def as_sqlite(
        self, compiler: Any, connection: Any, **extra_context: Any
    ) -> tuple[str, tuple[str | int, ...]]:
        sql, params = compiler.compile(self.lhs)
        return f"(SUBSTR({sql}, 1, 13) || ':00:00')", tuple(params)


def _refresh_hourly(organization: Organization, start: datetime, end: datetime) -> None:
    UsageHourly.objects.filter(organization=organization, hour__gte=start, hour__lt=end).delete()
    grouped = (
        UsageRecord.objects.filter(organization=organization, occurred_at__gte=start, occurred_at__lt=end)
        .annotate(utc_hour=UtcHour("occurred_at"))
        .values("utc_hour", "model", "status", "currency")
        .annotate(**_rollup_sums())
        .order_by()
    )
    dims = [("hour", "utc_hour"), ("model", "model"), ("status", "status"), ("currency", "currency")]
    _insert_grouped(UsageHourly, organization, dims, grouped)


def rollup_rebuild(*, organization: Organization, since: date | None = None) -> int:
    """Rebuild every rollup day of the organization from ``since`` (default: its first record)."""
    bounds = UsageRecord.objects.filter(organization=organization).aggregate(
        first=Min("occurred_at"), last=Max("occurred_at")
    )
    if bounds["first"] is None:
        UsageDaily.objects.filter(organization=organization).delete()
        UsageHourly.objects.filter(organization=organization).delete()
        return 0
    tz = organization.zoneinfo
    first = max(since, local_day(bounds["first"], tz)) if since else local_day(bounds["first"], tz)
    last = max(local_day(bounds["last"], tz), timezone.now().astimezone(tz).date())
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return rollup_refresh_days(organization=organization, days=days)
