"""Billing endpoints of the JSON API: the latest balance per provider account."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from projects.api import ErrorOut, token_of

from .selectors import latest_balances

router = Router(tags=["billing"])


class BalanceOut(Schema):
    account: str = Field(description="Provider account slug.")
    name: str
    kind: str
    currency: str | None = Field(description="Currency of the snapshot; null when never polled.")
    remaining: str | None = Field(description="Decimal string, unrounded; null when never polled.")
    used: str | None
    raw_quota: int | None = Field(description="Gateways only: remaining balance in quota units.")
    taken_at: datetime | None


class BalancesOut(Schema):
    balances: list[BalanceOut]


def _amount(value: Any) -> str | None:
    return format(value, "f") if value is not None else None


@router.get(
    "/balances",
    url_name="api-balances",
    summary="Latest balance snapshot per provider account",
    response={200: BalancesOut, 401: ErrorOut, 403: ErrorOut, 429: ErrorOut},
)
def balances(request: HttpRequest) -> Any:
    """Return each provider account of the token's organization with its newest balance reading.

    Balances belong to the organization, so a token limited to one project is refused (403).
    """
    token = token_of(request)
    if token.project_id is not None:
        return Status(403, {"detail": "balances are organization-wide; this token is limited to one project"})
    items = []
    for entry in latest_balances(organization=token.organization):
        snap = entry.snapshot
        items.append(
            {
                "account": entry.account.slug,
                "name": entry.account.name,
                "kind": entry.account.kind,
                "currency": snap.currency if snap else None,
                "remaining": _amount(snap.remaining) if snap else None,
                "used": _amount(snap.used) if snap else None,
                "raw_quota": snap.raw_quota if snap else None,
                "taken_at": snap.taken_at if snap else None,
            }
        )
    return Status(200, {"balances": items})
