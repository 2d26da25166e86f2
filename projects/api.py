"""The JSON API's shell: bearer-token auth with a per-token rate limit, and error mapping.

Routers live in the apps (``usage.api``, ``billing.api``); ``config/urls.py`` mounts them on the
one ``NinjaAPI`` built here. Every error body is ``{"detail": "..."}``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, ValidationError
from ninja.security import HttpBearer

from .models import IngestToken
from .services import ingest_token_authenticate, ingest_token_hit

API_DESCRIPTION = """\
Push usage records from your own code and read spend and balances.

Authenticate with `Authorization: Bearer <ingest token>`; tokens are created by organization admins
under *Ingest tokens*. Money is always a decimal string next to its currency.
"""


class ErrorOut(Schema):
    detail: str


class RateLimited(Exception):
    def __init__(self, retry_after: int, limit: int) -> None:
        super().__init__("rate limit exceeded")
        self.retry_after = retry_after
        self.limit = limit


class IngestTokenAuth(HttpBearer):
    """Accept a live ingest token, then count the request against the token's rate limit.

    Runs before ninja reads the body, so a bad token is refused (401) without parsing anything.
    """

    def authenticate(self, request: HttpRequest, token: str) -> IngestToken | None:
        found = ingest_token_authenticate(token.strip())
        if found is None:
            return None
        decision = ingest_token_hit(token=found)
        if not decision.allowed:
            raise RateLimited(decision.retry_after, decision.limit)
        return found


def error_response(status: int, detail: str, **headers: str) -> HttpResponse:
    response = JsonResponse({"detail": detail}, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def make_api() -> NinjaAPI:
    """Return the API object (``/api/v1/``), with auth and error handlers set and no routers yet."""
    api = NinjaAPI(
        title="Quotaboard API",
        version="1",
        description=API_DESCRIPTION,
        urls_namespace="api-v1",
        auth=IngestTokenAuth(),
    )

    @api.exception_handler(AuthenticationError)
    def unauthorized(request: HttpRequest, exc: Exception) -> HttpResponse:
        return error_response(
            401, "missing, unknown, revoked or expired token", **{"WWW-Authenticate": "Bearer"}
        )

    @api.exception_handler(RateLimited)
    def rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
        return error_response(
            429,
            f"rate limit of {exc.limit} requests per minute exceeded for this token",
            **{"Retry-After": str(exc.retry_after)},
        )

    @api.exception_handler(RequestDataTooBig)
    def too_big(request: HttpRequest, exc: Exception) -> HttpResponse:
        return error_response(
            413, f"request body is over the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
        )

    @api.exception_handler(ValidationError)
    def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        problems: list[str] = []
        for error in exc.errors[:5]:
            if isinstance(error, dict):
                where = ".".join(str(p) for p in error.get("loc", ()) if p not in {"query", "body"})
                problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg")))
        return error_response(422, "; ".join(problems) or "invalid request")

    return api


def token_of(request: HttpRequest) -> IngestToken:
    """Return the authenticated ingest token of an API request."""
    token: Any = getattr(request, "auth", None)
    assert isinstance(token, IngestToken)
    return token
