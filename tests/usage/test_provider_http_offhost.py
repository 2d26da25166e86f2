"""S3: a provider credential never leaves for another host, and private targets can be refused.

A base URL that redirects elsewhere must not carry the Authorization header along (the client never
follows redirects); with QB_ALLOW_PRIVATE_PROVIDER_HOSTS off, metadata, loopback and private-range
base URLs are refused before any connection. Errors shown carry no token.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from usage import ingest
from usage.models import RunStatus
from usage.providers.http import ProviderError, ProviderHTTP
from usage.providers.registry import connector_for

from .. import factories
from .loopback import Loopback, reply

CANARY = f"qb-canary-{uuid.uuid4()}"
DAY_START = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture
def elsewhere() -> Iterator[Loopback]:
    server = Loopback()
    server.route("/api/log/self", reply({"success": True, "data": {"items": [], "total": 0}}))
    yield server
    server.stop()


def test_a_redirect_to_another_host_is_refused_and_the_token_never_arrives_there(
    loopback: Loopback, elsewhere: Loopback
) -> None:
    # "localhost" vs "127.0.0.1": another host name, so a client following it would be cross-host.
    target = elsewhere.url.replace("127.0.0.1", "localhost") + "/api/log/self"
    loopback.route("/api/log/self", reply({}, status=302, Location=target))
    client = ProviderHTTP(loopback.url, secret=CANARY, headers={"Authorization": f"Bearer {CANARY}"})
    with pytest.raises(ProviderError) as caught:
        client.get_json("/api/log/self")
    client.close()
    assert "redirect refused" in str(caught.value)
    assert CANARY not in str(caught.value)
    assert loopback.calls("/api/log/self")[0].headers["authorization"] == f"Bearer {CANARY}"
    assert elsewhere.seen == []


@pytest.mark.django_db
def test_an_ingest_against_a_redirecting_base_url_fails_with_a_clean_error(
    tenancy: Any, loopback: Loopback, elsewhere: Loopback
) -> None:
    loopback.route("/api/log/self", reply({}, status=301, Location=elsewhere.url + "/api/log/self"))
    account = factories.make_account(tenancy.org, "newapi", base_url=loopback.url, credential=CANARY)
    connector = connector_for(account)
    connector.http.sleep = lambda _s: None
    run = ingest.usage_ingest_window(
        account=account, start=DAY_START, end=DAY_START + timedelta(hours=1), connector=connector
    )
    connector.close()
    assert run.status == RunStatus.FAILED
    assert "redirect refused" in run.error and CANARY not in run.error
    assert elsewhere.seen == []


@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:8080",
        "http://127.0.0.1:9",
        "http://10.0.0.5",
        "http://192.168.1.10",
        "http://172.16.0.1",
        "http://[::1]:8080",
    ],
)
def test_private_targets_are_refused_unless_the_operator_allows_them(base_url: str, settings: Any) -> None:
    settings.PROVIDER_ALLOW_PRIVATE_HOSTS = False
    with pytest.raises(ProviderError) as caught:
        ProviderHTTP(base_url, secret=CANARY, headers={"Authorization": f"Bearer {CANARY}"})
    assert "refusing private or loopback provider host" in str(caught.value)
    assert CANARY not in str(caught.value)
    settings.PROVIDER_ALLOW_PRIVATE_HOSTS = True
    ProviderHTTP(base_url, secret=CANARY).close()  # allowed when the operator opts in
