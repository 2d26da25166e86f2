"""B1: schemathesis over the app's own OpenAPI schema, with a valid token, finds no 5xx and no drift."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from projects.services import ingest_token_create
from tests.conftest import Tenancy


@pytest.fixture
def api_schema(db: None) -> Iterator[Any]:
    from config.wsgi import application

    # The raw WSGI app closes the database connection after each request (Django's test client
    # unhooks that); the test's transaction must survive every call.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        loaded = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)
        loaded.config.generation.update(
            modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
        )
        yield loaded
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_token(tenancy: Tenancy, settings: Any) -> str:
    settings.QB_API_RATE_LIMIT_PER_MINUTE = 1_000_000
    return ingest_token_create(organization=tenancy.org, name="schemathesis", created_by=None)[1]


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_api_never_answers_5xx_and_matches_its_schema(case: Any, api_token: str) -> None:
    # identity: the WSGI transport does not undo GZipMiddleware, real HTTP clients do.
    from usage.models import UsageRecord

    stored_before = UsageRecord.objects.count()
    response = case.call(headers={"Authorization": f"Bearer {api_token}", "Accept-Encoding": "identity"})
    if response.status_code >= 400:
        assert UsageRecord.objects.count() == stored_before, "a rejected request stored records"
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
