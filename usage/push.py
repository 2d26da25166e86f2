"""Push API writes: one batch of client records, with optional Idempotency-Key replay.

Two layers of idempotency, as the reliability notes decide:
1. Per record: ``request_id`` is the natural key (namespace: the organization's push source), so a
   record re-sent in any later batch is acknowledged as a duplicate and never counted twice.
2. Per request, optional: an ``Idempotency-Key`` header. The first response is stored with the rows
   it reports in one transaction and replayed byte for byte; the same key with another body is 422,
   and a key whose first request is still running is 409.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from projects.models import IdempotencyRecord, IdempotencyState, IngestToken, Organization, Project

from .models import RecordSource
from .providers.base import UsageRow
from .records import RecordError, loads_records, record_from_mapping, row_from_record
from .services import UpsertResult, usage_rows_upsert


@dataclass(frozen=True)
class PushResponse:
    status: int
    content: bytes


def _json(status: int, payload: dict[str, Any]) -> PushResponse:
    return PushResponse(status, json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())


def push_namespace(organization: Organization) -> str:
    """Return the dedupe namespace of client records (push and our-format imports share it)."""
    return f"org:{organization.pk}:push"


def usage_push_batch(*, token: IngestToken, body: bytes) -> PushResponse:
    """Validate a batch body and store its valid records; return the response to send.

    Invalid records are listed with their index and reason and the others stored. A record naming a
    project the token may not write refuses the whole batch (403) and stores nothing.
    """
    try:
        data = loads_records(body)
    except (ValueError, RecursionError):
        return _json(400, {"detail": "body is not valid JSON"})
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        return _json(422, {"detail": "body must be a JSON object with a 'records' array"})
    if set(data) - {"records"}:
        return _json(422, {"detail": "unknown top-level fields; only 'records' is accepted"})
    records = data["records"]
    limit = settings.QB_API_MAX_BATCH
    if len(records) > limit:
        return _json(413, {"detail": f"batch of {len(records)} records is over the limit of {limit}"})

    organization = token.organization
    project_slugs = set(Project.objects.filter(organization=organization).values_list("slug", flat=True))
    token_slug = token.project.slug if token.project else ""
    rows_by_provider: dict[str | None, list[UsageRow]] = defaultdict(list)
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(records):
        try:
            record = record_from_mapping(item)
            if token_slug and record.project and record.project != token_slug:
                return _json(
                    403,
                    {
                        "detail": f"record {index}: this token may only write project '{token_slug}'",
                    },
                )
            if record.project and record.project not in project_slugs:
                raise RecordError(f"project: no project '{record.project}' in this organization")
            row = row_from_record(record, project_slug=token_slug)
        except RecordError as exc:
            rejected.append({"index": index, "reason": str(exc)})
            continue
        rows_by_provider[record.provider].append(row)

    total = UpsertResult()
    with transaction.atomic():
        for provider, rows in rows_by_provider.items():
            total.add(
                usage_rows_upsert(
                    organization=organization,
                    rows=rows,
                    source=RecordSource.PUSH,
                    namespace=push_namespace(organization),
                    provider_kind=provider,
                )
            )
    return _json(
        200,
        {"accepted": total.new + total.updated, "duplicates": total.unchanged, "rejected": rejected},
    )


def usage_push(*, token: IngestToken, body: bytes, idempotency_key: str | None) -> PushResponse:
    """Run ``usage_push_batch`` under an optional Idempotency-Key (see the module docstring)."""
    if idempotency_key is None:
        return usage_push_batch(token=token, body=body)
    if not 1 <= len(idempotency_key) <= 255 or not idempotency_key.isprintable():
        return _json(400, {"detail": "Idempotency-Key must be 1-255 printable characters"})
    body_hash = hashlib.sha256(body).hexdigest()
    claim = _claim(token.organization, idempotency_key, body_hash)
    if isinstance(claim, PushResponse):
        return claim
    try:
        with transaction.atomic():
            response = usage_push_batch(token=token, body=body)
            IdempotencyRecord.objects.filter(pk=claim.pk).update(
                state=IdempotencyState.DONE,
                response_status=response.status,
                response_body=response.content,
            )
    except BaseException:
        # Nothing was written: free the key so that the client's retry runs the batch.
        IdempotencyRecord.objects.filter(pk=claim.pk, state=IdempotencyState.IN_FLIGHT).delete()
        raise
    return response


def _claim(organization: Organization, key: str, body_hash: str) -> IdempotencyRecord | PushResponse:
    """Claim the key (committed at once, so a concurrent twin sees it) or return the answer for a reuse."""
    now = timezone.now()
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                organization=organization, key=key, body_sha256=body_hash, claimed_at=now
            )
    except IntegrityError:
        pass
    existing = IdempotencyRecord.objects.filter(organization=organization, key=key).first()
    if existing is None:
        # The first request failed and released the key a moment ago: let the client retry.
        return _json(409, {"detail": "a request with this Idempotency-Key is in progress; retry"})
    if existing.body_sha256 != body_hash:
        return _json(422, {"detail": "Idempotency-Key was already used with a different body"})
    if existing.state == IdempotencyState.DONE and existing.response_status is not None:
        return PushResponse(existing.response_status, bytes(existing.response_body or b""))
    stale_before = now - timedelta(seconds=settings.QB_IDEMPOTENCY_STALE_SECONDS)
    if existing.claimed_at < stale_before:
        # The first request died without releasing the key (killed process): take it over, once.
        taken = IdempotencyRecord.objects.filter(
            pk=existing.pk, state=IdempotencyState.IN_FLIGHT, claimed_at=existing.claimed_at
        ).update(claimed_at=now)
        if taken:
            existing.claimed_at = now
            return existing
    return _json(409, {"detail": "a request with this Idempotency-Key is in progress; retry"})
