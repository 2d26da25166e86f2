from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from projects.models import AccountStatus
from usage.models import IngestRun, RunStatus, Stream, StreamState

from .. import factories
from ..conftest import client_for


def url(org_slug: str) -> str:
    return reverse("data_sources", kwargs={"org_slug": org_slug})


def sync_url(org_slug: str, account_slug: str) -> str:
    return reverse("data_sources_sync", kwargs={"org_slug": org_slug, "account_slug": account_slug})


def test_empty_state_explains_how_to_add_an_account(tenancy) -> None:
    response = client_for(tenancy.viewer).get(url("acme"))
    assert response.status_code == 200
    assert b"No provider accounts yet" in response.content
    assert b"QB_CREDENTIAL" in response.content


def test_outsider_gets_404(tenancy) -> None:
    account = factories.make_account(tenancy.org, "newapi", slug="gw")
    client = client_for(tenancy.outsider)
    assert client.get(url("acme")).status_code == 404
    assert client.post(sync_url("acme", account.slug)).status_code == 404


def test_streams_show_last_success_complete_through_next_run_and_redacted_error(tenancy) -> None:
    account = factories.make_account(tenancy.org, "newapi", slug="gw", name="Reseller gateway")
    now = timezone.now()
    StreamState.objects.create(
        provider_account=account,
        stream=Stream.USAGE,
        cursor_at=now - timedelta(minutes=3),
        last_success_at=now - timedelta(minutes=2),
        next_run_at=now + timedelta(minutes=3),
        last_error="HTTP 500: upstream boom",
        last_error_at=now - timedelta(hours=1),
    )
    IngestRun.objects.create(
        provider_account=account,
        organization=tenancy.org,
        stream=Stream.USAGE,
        status=RunStatus.SUCCESS,
        rows_new=1234,
    )
    response = client_for(tenancy.viewer).get(url("acme"))
    body = response.content.decode()
    assert "Reseller gateway" in body
    assert "Data complete through" in body
    assert "HTTP 500: upstream boom" in body
    assert "1,234" in body
    assert "sk-test-credential" not in body


def test_needs_attention_is_shown_with_the_providers_message(tenancy) -> None:
    factories.make_account(
        tenancy.org,
        "openai",
        slug="oa",
        status=AccountStatus.NEEDS_ATTENTION,
        status_message="usage: HTTP 401: Unauthorized: credential revoked",
    )
    body = client_for(tenancy.viewer).get(url("acme")).content.decode()
    assert "Needs attention" in body
    assert "credential revoked" in body


def test_the_page_runs_a_fixed_number_of_queries(tenancy, django_assert_max_num_queries) -> None:
    for n in range(6):
        account = factories.make_account(tenancy.org, "newapi", slug=f"gw{n}")
        StreamState.objects.create(provider_account=account, stream=Stream.USAGE)
        for _ in range(8):
            IngestRun.objects.create(provider_account=account, organization=tenancy.org, stream=Stream.USAGE)
    client = client_for(tenancy.admin)
    with django_assert_max_num_queries(10):
        response = client.get(url("acme"))
    assert response.content.decode().count('<section class="card source-card"') == 6


def test_only_admins_see_and_use_sync_now(tenancy, django_capture_on_commit_callbacks) -> None:
    account = factories.make_account(tenancy.org, "newapi", slug="gw")
    assert b"Sync now" not in client_for(tenancy.viewer).get(url("acme")).content
    for user in (tenancy.viewer, tenancy.finance, tenancy.owner):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            assert client_for(user).post(sync_url("acme", account.slug)).status_code == 403
        assert callbacks == []
    assert b"Sync now" in client_for(tenancy.admin).get(url("acme")).content


def test_sync_now_enqueues_the_tasks_after_commit_and_returns_a_polling_card(
    tenancy, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    from usage import tasks

    account = factories.make_account(tenancy.org, "newapi", slug="gw")
    sent: list[tuple[str, list[int]]] = []
    monkeypatch.setattr(tasks.ingest_account_usage, "delay", lambda *a: sent.append(("usage", list(a))))
    monkeypatch.setattr(
        "usage.source_views.current_app.send_task", lambda name, args: sent.append((name, list(args)))
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client_for(tenancy.admin).post(
            sync_url("acme", account.slug), headers={"HX-Request": "true"}
        )
    assert response.status_code == 200
    assert len(callbacks) == 2
    assert sorted(sent) == [("billing.tasks.poll_account_balance", [account.pk]), ("usage", [account.pk])]
    body = response.content.decode()
    assert "<html" not in body  # the card partial only
    assert 'hx-trigger="every 2s"' in body


def test_the_polling_card_shows_the_run_then_stops(tenancy) -> None:
    account = factories.make_account(tenancy.org, "newapi", slug="gw")
    client = client_for(tenancy.admin)
    since = timezone.now() - timedelta(seconds=1)
    card = client.get(
        url("acme"), {"account": "gw", "since": since.isoformat()}, headers={"HX-Request": "true"}
    )
    assert 'hx-trigger="every 2s"' in card.content.decode()
    IngestRun.objects.create(
        provider_account=account,
        organization=tenancy.org,
        stream=Stream.USAGE,
        status=RunStatus.SUCCESS,
        rows_new=42,
        finished_at=timezone.now(),
    )
    card = client.get(
        url("acme"), {"account": "gw", "since": since.isoformat()}, headers={"HX-Request": "true"}
    )
    body = card.content.decode()
    assert "Success" in body
    assert "hx-trigger" not in body
