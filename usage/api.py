"""Usage endpoints of the JSON API: push records, read spend. Mounted under /api/v1/ in config/urls.py."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Literal

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Query, Router, Schema, Status
from pydantic import Field

from projects.api import ErrorOut, error_response, token_of

from .push import usage_push
from .records import UsageRecordIn
from .selectors import UsageFilter, spend_grouped

router = Router(tags=["usage"])
MAX_SPEND_DAYS = 366
JSON_TYPES = {"application/json"}


class RejectedRecord(Schema):
    index: int
    reason: str


class PushResult(Schema):
    accepted: int = Field(description="Records stored (new, or a revision of a stored request_id).")
    duplicates: int = Field(description="Records whose request_id was already stored unchanged.")
    rejected: list[RejectedRecord]


def _push_body_schema() -> dict[str, Any]:
    # The body is parsed by hand (one bad record must not refuse the batch), so ninja cannot derive
    # its schema from a parameter; the record model still documents every field.
    record = UsageRecordIn.model_json_schema()
    record.pop("title", None)
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["records"],
                    "properties": {
                        "records": {"type": "array", "maxItems": settings.QB_API_MAX_BATCH, "items": record}
                    },
                }
            }
        },
    }


@router.post(
    "/usage",
    url_name="api-usage-push",
    summary="Push a batch of usage records",
    response={
        200: PushResult,
        400: ErrorOut,
        401: ErrorOut,
        403: ErrorOut,
        409: ErrorOut,
        413: ErrorOut,
        415: ErrorOut,
        422: ErrorOut,
        429: ErrorOut,
    },
    openapi_extra={
        "requestBody": _push_body_schema(),
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "Same key + same body replays the first response; another body is 422.",
            }
        ],
    },
)
def push_usage(request: HttpRequest) -> HttpResponse:
    """Store up to 5,000 records. Invalid records come back with their index and reason; the rest land.

    A record whose `request_id` is already stored counts as a duplicate and changes nothing.
    """
    token = token_of(request)
    if request.content_type not in JSON_TYPES:
        return error_response(415, "Content-Type must be application/json")
    # Compressed bodies are not inflated (no decompression bombs); say so instead of "not valid JSON".
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        return error_response(415, "Content-Encoding is not supported; send the JSON uncompressed")
    body = request.body  # RequestDataTooBig (413) is raised here, before any parsing.
    result = usage_push(token=token, body=body, idempotency_key=request.headers.get("Idempotency-Key"))
    return HttpResponse(result.content, status=result.status, content_type="application/json")


class SpendRow(Schema):
    group: str = Field(description="The day (YYYY-MM-DD), project slug, model or key name; '' = unassigned.")
    currency: str
    cost: str = Field(description="Decimal string, unrounded.")
    requests: int
    input_tokens: int
    output_tokens: int
    unpriced_requests: int


class SpendOut(Schema):
    start: date
    end: date
    timezone: str
    group_by: str
    rows: list[SpendRow]


class SpendQuery(Schema):
    start: date | None = Field(None, description="First local day (inclusive); default 29 days before end.")
    end: date | None = Field(None, description="Last local day (inclusive); default today.")
    group_by: Literal["day", "project", "model", "key"] = "day"


@router.get(
    "/spend",
    url_name="api-spend",
    summary="Spend per day, project, model or key, per currency",
    response={200: SpendOut, 401: ErrorOut, 422: ErrorOut, 429: ErrorOut},
)
def spend(request: HttpRequest, params: Query[SpendQuery]) -> Any:
    """Read the daily rollups: one row per group and currency (currencies are never added together).

    Days are the organization's local days. A token limited to one project sees only that project.
    """
    token = token_of(request)
    org = token.organization
    today = timezone.now().astimezone(org.zoneinfo).date()
    end = params.end or today
    start = params.start or (end - timedelta(days=29) if end > date.min + timedelta(days=29) else end)
    if start > end:
        return Status(422, {"detail": "start must not be after end"})
    if (end - start).days >= MAX_SPEND_DAYS:
        return Status(422, {"detail": f"the range may span at most {MAX_SPEND_DAYS} days"})
    flt = UsageFilter(start=start, end=end, project_ids=(token.project_id,) if token.project_id else ())
    groups = spend_grouped(organization=org, flt=flt, group_by=params.group_by)
    return Status(
        200,
        {
            "start": start,
            "end": end,
            "timezone": org.timezone,
            "group_by": params.group_by,
            "rows": [
                {
                    "group": g.group,
                    "currency": g.currency,
                    "cost": format(g.cost, "f"),
                    "requests": g.requests,
                    "input_tokens": g.input_tokens,
                    "output_tokens": g.output_tokens,
                    "unpriced_requests": g.unpriced_requests,
                }
                for g in groups
            ],
        },
    )
