"""S1: a canary credential never appears on a page, partial, export, admin page or task message.

(Logs, ingest runs and account status messages are covered by
tests/usage/test_services_ingest.py::test_the_credential_never_reaches_logs_runs_or_accounts.)
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import transaction
from django.http import HttpResponse

from billing.models import AlertPolicy, Budget
from projects.models import ProviderAccount
from tests import factories
from tests.conftest import Tenancy, client_for
from tests.projects.test_url_access import build_url, org_url_names

CANARY = f"qb-canary-{uuid.uuid4()}"
# Webhook signing secrets (budgets and the organization's alert webhook) look like real ones.
WEBHOOK_CANARY = f"qbwh_canary{uuid.uuid4().hex}"


def body(response: HttpResponse) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")  # type: ignore[attr-defined]
    return response.content.decode(errors="replace")


def plant_canary() -> None:
    for account in ProviderAccount.objects.all():
        account.set_credential(CANARY)
        account.save()
    for signer in [*Budget.objects.all(), *AlertPolicy.objects.all()]:
        signer.set_webhook_secret(WEBHOOK_CANARY)
        signer.save()


@pytest.mark.parametrize("name", org_url_names())
def test_no_org_page_partial_or_export_shows_the_credential(name: str, tenancy: Tenancy) -> None:
    with transaction.atomic():
        url = build_url(name, tenancy)
        factories.make_account(tenancy.org, "openai")
        AlertPolicy.objects.create(organization=tenancy.org, webhook_url="https://hooks.acme.test/org")
        plant_canary()
        client = client_for(tenancy.admin)
        for response in (client.get(url), client.get(url, headers={"HX-Request": "true"})):
            for secret in (CANARY, WEBHOOK_CANARY):
                assert secret not in body(response), url
                assert secret[:-4] not in body(response), url  # not even the part the hint leaves out
        transaction.set_rollback(True)


@pytest.mark.django_db
def test_a_revealed_webhook_secret_is_in_the_reveal_response_and_on_no_page_after_it(
    tenancy: Tenancy,
) -> None:
    budget = Budget.objects.create(
        organization=tenancy.org, project=tenancy.project, monthly_amount=100, webhook_url="https://h.test/"
    )
    AlertPolicy.objects.create(organization=tenancy.org, webhook_url="https://hooks.acme.test/org")
    client = client_for(tenancy.admin)
    reveals = [
        client.post(f"/o/{tenancy.org.slug}/budgets/{budget.public_id}/webhook-secret/"),
        client.post(f"/o/{tenancy.org.slug}/alerts/webhook-secret/", headers={"HX-Request": "true"}),
    ]
    secrets = [signer.webhook_secret() for signer in (Budget.objects.get(), AlertPolicy.objects.get())]
    for response, secret in zip(reveals, secrets, strict=True):
        assert response.status_code == 200 and secret in body(response)
    for name in org_url_names():
        with transaction.atomic():
            url = build_url(name, tenancy)
            for response in (client.get(url), client.get(url, headers={"HX-Request": "true"})):
                for secret in secrets:
                    assert secret[:-4] not in body(response), url
            transaction.set_rollback(True)


@pytest.mark.django_db
def test_admin_shows_a_masked_suffix_and_saving_without_retyping_keeps_the_secret(tenancy: Tenancy) -> None:
    superuser = factories.make_user("root", is_staff=True, is_superuser=True)
    account = factories.make_account(tenancy.org, "newapi", credential=CANARY, slug="gw")
    client = client_for(superuser)
    change_url = f"/admin/projects/provideraccount/{account.pk}/change/"
    for url in ("/admin/projects/provideraccount/", change_url):
        page = body(client.get(url))
        assert CANARY not in page and CANARY[:-4] not in page
        assert f"…{CANARY[-4:]}" in page
    fields = {
        "organization": account.organization_id,
        "kind": account.kind,
        "name": "Renamed gateway",
        "slug": account.slug,
        "base_url": account.base_url,
        "newapi_user_id": account.newapi_user_id or "",
        "quota_per_unit": account.quota_per_unit,
        "currency": account.currency,
        "status": account.status,
        "status_message": account.status_message,
        "balance_interval_minutes": account.balance_interval_minutes,
        "usage_interval_minutes": account.usage_interval_minutes,
        "low_balance_runway_days": account.low_balance_runway_days,
        "low_balance_amount": "",
        "credential": "",
    }
    response = client.post(change_url, {k: "" if v is None else v for k, v in fields.items()})
    assert response.status_code == 302, body(response)[:2000]
    account.refresh_from_db()
    assert account.name == "Renamed gateway"
    assert account.get_credential() == CANARY


@pytest.mark.django_db
def test_task_messages_carry_ids_never_the_credential(
    tenancy: Tenancy, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from billing.tasks import dispatch_balance_polls
    from config.celery import app
    from usage.tasks import dispatch_usage_ingests

    sent: list[tuple[str, Any, Any]] = []

    def record(name: str, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        sent.append((name, args, kwargs))

    monkeypatch.setattr(app, "send_task", record)
    account = factories.make_account(tenancy.org, "newapi", credential=CANARY, slug="gw")
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(tenancy.admin).post(f"/o/{tenancy.org.slug}/sources/{account.slug}/sync/")
    assert response.status_code == 302, response
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_usage_ingests()
        dispatch_balance_polls()
    names = {name for name, _, _ in sent}
    assert {"usage.tasks.ingest_account_usage", "billing.tasks.poll_account_balance"} <= names, sent
    for name, args, kwargs in sent:
        assert CANARY not in repr((args, kwargs)), name
        assert account.pk in list(args or []) + list((kwargs or {}).values()), (name, args, kwargs)
