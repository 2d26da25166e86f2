"""POST /api/v1/usage: auth, per-record validation, dedupe by request_id, idempotency keys, limits."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from projects.models import IdempotencyRecord, IdempotencyState, IngestToken
from projects.services import ingest_token_create, ingest_token_revoke
from tests.conftest import Tenancy
from usage import push
from usage.models import CostSource, ModelPrice, RecordSource, UsageDaily, UsageRecord

URL = "/api/v1/usage"


def make_token(t: Tenancy, project: Any = None, **kwargs: Any) -> str:
    _token, secret = ingest_token_create(
        organization=t.org, name="ci", created_by=t.admin, project=project, **kwargs
    )
    return secret


def record(n: int, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "request_id": f"req-{n}",
        "occurred_at": "2026-10-15T12:00:00+02:00",
        "model": "gpt-4o",
        "input_tokens": 1000,
        "cached_input_tokens": 200,
        "output_tokens": 500,
        "cost": "0.0123456789",
        "currency": "USD",
    }
    base.update(overrides)
    return base


def post(secret: str | None, body: Any, *, raw: bytes | None = None, **headers: str) -> Any:
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    data = raw if raw is not None else json.dumps(body).encode()
    return Client().post(
        URL, data=data, content_type=headers.pop("content_type", "application/json"), headers=headers
    )


def stored_cost(t: Tenancy) -> Decimal:
    return UsageDaily.objects.filter(organization=t.org).aggregate(total=Sum("cost"))["total"] or Decimal(0)


def test_a_batch_pushed_twice_leaves_totals_unchanged(tenancy: Tenancy) -> None:
    secret = make_token(tenancy)
    costs = ["0.0123456789", "1.5", "0.0000000001", "2"]
    batch = {"records": [record(n, cost=c) for n, c in enumerate(costs)]}

    first = post(secret, batch)
    second = post(secret, batch)

    assert first.status_code == 200
    assert first.json() == {"accepted": 4, "duplicates": 0, "rejected": []}
    assert second.json() == {"accepted": 0, "duplicates": 4, "rejected": []}
    assert UsageRecord.objects.filter(organization=tenancy.org, source=RecordSource.PUSH).count() == 4
    assert stored_cost(tenancy) == sum((Decimal(c) for c in costs), Decimal(0))
    assert stored_cost(tenancy) == Decimal("3.5123456790")


def test_invalid_records_come_back_with_index_and_reason_while_valid_ones_land(tenancy: Tenancy) -> None:
    secret = make_token(tenancy)
    batch = {
        "records": [
            record(0),
            record(1, input_tokens=-5),
            record(2, occurred_at="2026-02-30T00:00:00Z"),
            record(3, occurred_at="2026-10-15T12:00:00"),
            record(4, cost="NaN"),
            record(5, project="nope"),
            "not an object",
            record(7, cached_input_tokens=5000),
            record(8),
        ]
    }
    response = post(secret, batch)

    body = response.json()
    assert response.status_code == 200
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3, 4, 5, 6, 7]
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert reasons[1].startswith("input_tokens:")
    assert reasons[3].startswith("occurred_at:") and "timezone" in reasons[3]
    assert reasons[5] == "project: no project 'nope' in this organization"
    assert set(UsageRecord.objects.values_list("model", flat=True)) == {"gpt-4o"}
    assert UsageRecord.objects.count() == 2


def test_non_finite_and_huge_json_numbers_reject_only_their_record(tenancy: Tenancy) -> None:
    secret = make_token(tenancy)
    raw = (
        b'{"records": ['
        + json.dumps(record(0)).encode()
        + b', {"request_id": "x", "occurred_at": "2026-10-15T00:00:00Z", "model": "m", "cost": NaN}'
        + b', {"request_id": "y", "occurred_at": "2026-10-15T00:00:00Z", "model": "m", "input_tokens": '
        + b"9" * 5000
        + b'}, {"request_id": "z", "occurred_at": "2026-10-15T00:00:00Z", "model": "m", "output_tokens": 1e400}'
        + b"]}"
    )
    response = post(secret, None, raw=raw)

    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert [r["index"] for r in response.json()["rejected"]] == [1, 2, 3]


def test_costs_in_exponent_form_are_stored_exactly_and_absurd_ones_rejected(tenancy: Tenancy) -> None:
    """Python's str(Decimal("0.0000007243")) is "7.243E-7": clients send it, so it is the same amount."""
    secret = make_token(tenancy)
    body = {
        "records": [
            record(0, cost=str(Decimal("7243") / Decimal(10**10))),
            record(1, cost="1.5e+2"),
            record(2, cost="1e-30"),
            record(3, cost="2E12"),
        ]
    }
    response = post(secret, body)

    assert response.status_code == 200 and response.json()["accepted"] == 2
    assert [r["index"] for r in response.json()["rejected"]] == [2, 3]
    assert all("cost" in r["reason"] for r in response.json()["rejected"])
    assert stored_cost(tenancy) == Decimal("150.0000007243")


def test_a_token_limited_to_project_a_cannot_write_project_b(tenancy: Tenancy) -> None:
    secret = make_token(tenancy, project=tenancy.project)
    batch = {"records": [record(0), record(1, project=tenancy.other_project.slug)]}

    response = post(secret, batch)

    assert response.status_code == 403
    assert "chat" in response.json()["detail"]
    assert UsageRecord.objects.count() == 0


def test_a_limited_token_writes_its_own_project_when_records_name_none(tenancy: Tenancy) -> None:
    secret = make_token(tenancy, project=tenancy.project)

    response = post(secret, {"records": [record(0), record(1, project="chat")]})

    assert response.json()["accepted"] == 2
    assert set(UsageRecord.objects.values_list("project_id", flat=True)) == {tenancy.project.pk}


def test_records_without_cost_are_priced_from_the_providers_price_list(tenancy: Tenancy) -> None:
    ModelPrice.objects.create(
        provider_kind="openai",
        model="gpt-4o",
        effective_from="2026-01-01",
        input_per_1m=Decimal("2.5"),
        output_per_1m=Decimal("10"),
        cache_read_per_1m=Decimal("1.25"),
    )
    secret = make_token(tenancy)
    post(secret, {"records": [record(0, cost=None, provider="openai"), record(1, cost=None)]})

    priced = UsageRecord.objects.get(dedupe_key__isnull=False, cost_source=CostSource.PRICE)
    # 800 uncached x 2.5 + 200 cached x 1.25 + 500 out x 10, per 1M tokens.
    assert priced.cost == (800 * Decimal("2.5") + 200 * Decimal("1.25") + 500 * Decimal(10)) / 1_000_000
    assert UsageRecord.objects.filter(cost_source=CostSource.UNPRICED).count() == 1


@pytest.mark.parametrize("header", [None, "Bearer qbt_nope_nope", "Basic abc", "Bearer "])
def test_missing_or_unknown_tokens_get_401(tenancy: Tenancy, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = Client().post(URL, data=b"{}", content_type="application/json", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_wrong_secret_with_a_real_prefix_gets_401(tenancy: Tenancy) -> None:
    secret = make_token(tenancy)
    assert post(secret[:-2] + "xx", {"records": [record(0)]}).status_code == 401


def test_revoked_and_expired_tokens_get_401_before_the_body_is_parsed(tenancy: Tenancy) -> None:
    secret = make_token(tenancy)
    expired = make_token(tenancy, expires_at=timezone.now() - timedelta(seconds=1))
    ingest_token_revoke(token=IngestToken.objects.get(prefix=secret[:12]))

    assert post(secret, None, raw=b"{not json").status_code == 401
    assert post(expired, None, raw=b"{not json").status_code == 401
    assert UsageRecord.objects.count() == 0


def test_malformed_json_gets_400(tenancy: Tenancy) -> None:
    response = post(make_token(tenancy), None, raw=b'{"records": [')
    assert response.status_code == 400
    assert response.json() == {"detail": "body is not valid JSON"}


def test_a_wrong_content_type_gets_415(tenancy: Tenancy) -> None:
    response = post(make_token(tenancy), {"records": []}, content_type="text/plain")
    assert response.status_code == 415


@pytest.mark.parametrize("body", [[], {"records": {}}, {"records": [], "extra": 1}, {"rows": []}])
def test_a_body_without_a_records_array_gets_422(tenancy: Tenancy, body: Any) -> None:
    assert post(make_token(tenancy), body).status_code == 422


def test_a_body_over_the_byte_limit_gets_413(tenancy: Tenancy, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post(make_token(tenancy), {"records": [record(n) for n in range(20)]})
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["detail"]
    assert UsageRecord.objects.count() == 0


def test_a_batch_over_the_record_limit_gets_413_naming_the_limit(tenancy: Tenancy, settings: Any) -> None:
    settings.QB_API_MAX_BATCH = 3
    response = post(make_token(tenancy), {"records": [record(n) for n in range(4)]})
    assert response.status_code == 413
    assert response.json()["detail"] == "batch of 4 records is over the limit of 3"
    assert UsageRecord.objects.count() == 0


def test_a_token_past_its_rate_limit_gets_429_with_retry_after(tenancy: Tenancy, settings: Any) -> None:
    settings.QB_API_RATE_LIMIT_PER_MINUTE = 2
    secret, other = make_token(tenancy), make_token(tenancy)
    statuses = [post(secret, {"records": []}).status_code for _ in range(3)]
    limited = post(secret, {"records": []})

    assert statuses == [200, 200, 429]
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 61
    assert post(other, {"records": []}).status_code == 200


def test_the_same_idempotency_key_and_body_replays_the_first_response_byte_for_byte(
    tenancy: Tenancy,
) -> None:
    secret = make_token(tenancy)
    batch = {"records": [record(0), record(1, input_tokens=-1)]}

    first = post(secret, batch, **{"Idempotency-Key": "k-1"})
    replay = post(secret, batch, **{"Idempotency-Key": "k-1"})
    without_key = post(secret, batch)

    assert replay.status_code == first.status_code == 200
    assert replay.content == first.content
    assert json.loads(first.content)["accepted"] == 1
    assert without_key.json()["duplicates"] == 1
    assert UsageRecord.objects.count() == 1


def test_the_same_idempotency_key_with_another_body_gets_422(tenancy: Tenancy) -> None:
    secret = make_token(tenancy)
    post(secret, {"records": [record(0)]}, **{"Idempotency-Key": "k-2"})
    response = post(secret, {"records": [record(1)]}, **{"Idempotency-Key": "k-2"})
    assert response.status_code == 422
    assert UsageRecord.objects.count() == 1


def test_an_idempotency_key_still_in_flight_gets_409_until_it_goes_stale(
    tenancy: Tenancy, settings: Any
) -> None:
    secret = make_token(tenancy)
    body = json.dumps({"records": [record(0)]}).encode()
    claimed = IdempotencyRecord.objects.create(
        organization=tenancy.org,
        key="k-3",
        body_sha256=push.hashlib.sha256(body).hexdigest(),
        claimed_at=timezone.now(),
    )

    assert post(secret, None, raw=body, **{"Idempotency-Key": "k-3"}).status_code == 409
    assert UsageRecord.objects.count() == 0

    # A claim older than the stale limit belongs to a dead request: the retry takes it over.
    IdempotencyRecord.objects.filter(pk=claimed.pk).update(
        claimed_at=timezone.now() - timedelta(seconds=settings.QB_IDEMPOTENCY_STALE_SECONDS + 1)
    )
    retry = post(secret, None, raw=body, **{"Idempotency-Key": "k-3"})
    assert retry.status_code == 200
    assert UsageRecord.objects.count() == 1
    assert IdempotencyRecord.objects.get(pk=claimed.pk).state == IdempotencyState.DONE


def test_a_failure_after_the_claim_stores_nothing_and_frees_the_key_for_the_retry(
    tenancy: Tenancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = make_token(tenancy)
    batch = {"records": [record(0), record(1)]}
    real = push.usage_rows_upsert

    def explode(**kwargs: Any) -> Any:
        real(**kwargs)
        raise RuntimeError("database went away after the insert")

    monkeypatch.setattr(push, "usage_rows_upsert", explode)
    client = Client(raise_request_exception=False)
    failed = client.post(
        URL,
        data=json.dumps(batch),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": "k-4"},
    )
    monkeypatch.setattr(push, "usage_rows_upsert", real)
    retry = post(secret, batch, **{"Idempotency-Key": "k-4"})

    assert failed.status_code == 500
    assert retry.status_code == 200
    assert retry.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert UsageRecord.objects.count() == 2


def test_an_unprintable_idempotency_key_gets_400(tenancy: Tenancy) -> None:
    assert post(make_token(tenancy), {"records": []}, **{"Idempotency-Key": "a" * 256}).status_code == 400


def test_push_touches_the_tokens_last_used_time(tenancy: Tenancy) -> None:
    secret = make_token(tenancy)
    post(secret, {"records": []})
    assert IngestToken.objects.get(prefix=secret[:12]).last_used_at is not None
