"""B4 (rest): compressed bodies are refused with 415 and never inflated, so a gzip bomb costs nothing."""

from __future__ import annotations

import gzip
import json

from usage.models import UsageRecord

from ..conftest import Tenancy
from .test_api_push import URL, make_token, record


def test_a_gzip_bomb_is_refused_without_being_inflated(tenancy: Tenancy) -> None:
    from django.test import Client

    secret = make_token(tenancy)
    bomb = gzip.compress(b"[" + b" " * (64 * 1024 * 1024) + b"]")  # 64 MB of JSON in ~64 KB
    response = Client().post(
        URL,
        data=bomb,
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 415
    assert "Content-Encoding" in response.json()["detail"]
    assert UsageRecord.objects.count() == 0
    # A well-formed batch that is gzip-encoded is refused the same way, not silently mis-read.
    batch = gzip.compress(json.dumps({"records": [record(0)]}).encode())
    again = Client().post(
        URL,
        data=batch,
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}", "Content-Encoding": "gzip"},
    )
    assert again.status_code == 415
    assert UsageRecord.objects.count() == 0
