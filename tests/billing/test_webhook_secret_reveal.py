"""Webhook signing secrets: shown once (when a webhook is configured or its secret rotated), masked
afterwards, encrypted at rest; rotation changes what a real loopback receiver accepts."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.http import HttpResponse
from django.urls import reverse

from billing.models import AlertPolicy, Budget
from billing.services.alerts import (
    SIGNATURE_HEADER,
    DeliveryError,
    alert_delivery_send,
    alerts_evaluate,
)
from projects import encryption
from tests.billing.builders import budget, spend
from tests.conftest import Tenancy, client_for

MONTH_END = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
HX = {"HX-Request": "true"}
SECRET_RE = re.compile(r'data-testid="webhook-secret">(qbwh_[A-Za-z0-9_-]{43})<')


def revealed(response: HttpResponse) -> str | None:
    found = SECRET_RE.search(response.content.decode())
    return found.group(1) if found else None


def budget_form(project_pk: int | str, *, webhook_url: str, amount: str = "100") -> dict[str, Any]:
    return {
        "budget-project": project_pk,
        "budget-name": "chat",
        "budget-monthly_amount": amount,
        "budget-daily_amount": "",
        "budget-currency": "USD",
        "budget-model": "",
        "budget-thresholds": "50, 80, 100",
        "budget-recipients": "",
        "budget-webhook_url": webhook_url,
    }


class VerifyingReceiver:
    """A loopback webhook receiver that checks the signature the way the reveal note tells users to:
    HMAC-SHA256 of the raw body keyed with the secret; 200 if it verifies, 401 if not."""

    def __init__(self) -> None:
        self.secret = ""
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(expected, self.headers[SIGNATURE_HEADER] or "")
                receiver.answers.append(200 if ok else 401)
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/quotaboard"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[VerifyingReceiver]:
    r = VerifyingReceiver()
    yield r
    r.close()


@pytest.mark.django_db
def test_the_secret_is_shown_once_when_the_webhook_is_set_and_never_on_reload(tenancy: Tenancy) -> None:
    client = client_for(tenancy.owner)
    created = client.post(
        reverse("budget_create", args=["acme"]),
        budget_form(tenancy.project.pk, webhook_url="https://hooks.acme.test/a"),
        headers=HX,
    )
    secret = revealed(created)
    assert secret is not None
    assert "no-store" in created["Cache-Control"]
    html = created.content.decode()
    assert 'data-copy="#webhook-secret-value"' in html
    assert (
        "X-Quotaboard-Signature: sha256=&lt;hex&gt;" in html and "HMAC-SHA256 of the raw request body" in html
    )
    b = Budget.objects.get(name="chat")
    # Encrypted at rest: the column holds a Fernet token, never the secret.
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_secret_encrypted FROM billing_budget WHERE id = %s", [b.pk])
        stored = cursor.fetchone()[0]
    assert secret not in stored and stored.startswith("gAAAAA")
    assert encryption.decrypt(stored) == secret
    assert b.webhook_secret_hint == f"qbwh_…{secret[-4:]}"

    edit_url = reverse("budget_edit", args=["acme", b.public_id])
    for reload in (
        client.get(edit_url),
        client.get(edit_url, headers=HX),
        client.get(reverse("budget_list", args=["acme"])),
    ):
        assert secret not in reload.content.decode()
        assert secret[:-4] not in reload.content.decode()
    assert f"qbwh_…{secret[-4:]}" in client.get(edit_url).content.decode()

    # Saving again with the same URL keeps the secret and shows nothing; a new URL gets a new secret.
    same = client.post(
        edit_url, budget_form(tenancy.project.pk, webhook_url="https://hooks.acme.test/a", amount="120")
    )
    assert same.status_code == 302 and revealed(same) is None
    b.refresh_from_db()
    assert b.webhook_secret() == secret
    moved = client.post(
        edit_url, budget_form(tenancy.project.pk, webhook_url="https://hooks.acme.test/b"), headers=HX
    )
    new_secret = revealed(moved)
    assert new_secret is not None and new_secret != secret
    assert "Budget saved." in moved.content.decode()
    # Removing the webhook drops its secret.
    assert client.post(edit_url, budget_form(tenancy.project.pk, webhook_url="")).status_code == 302
    b.refresh_from_db()
    assert (b.webhook_secret_encrypted, b.webhook_secret_hint) == ("", "")


@pytest.mark.django_db
@time_machine.travel(MONTH_END, tick=False)
def test_rotation_changes_what_a_real_receiver_verifies(
    tenancy: Tenancy, receiver: VerifyingReceiver
) -> None:
    admin = client_for(tenancy.admin)
    created = admin.post(
        reverse("budget_create", args=["acme"]), budget_form(tenancy.project.pk, webhook_url=receiver.url)
    )
    receiver.secret = revealed(created) or ""
    assert receiver.secret
    b = Budget.objects.get(name="chat")

    spend(tenancy.org, date(2026, 11, 3), "55", project=tenancy.project)
    [at_50] = alerts_evaluate(organization=tenancy.org)
    assert alert_delivery_send(delivery_id=at_50.deliveries.get(channel="webhook").pk) == "sent"
    assert receiver.answers == [200]

    # The project's owner rotates; the receiver still holds the old secret.
    rotated = client_for(tenancy.owner).post(
        reverse("budget_webhook_rotate", args=["acme", b.public_id]), headers=HX
    )
    new_secret = revealed(rotated)
    assert rotated.status_code == 200 and new_secret is not None and new_secret != receiver.secret
    assert "no-store" in rotated["Cache-Control"]
    assert rotated.content.decode().lstrip().startswith('<div class="webhook-signing"')  # the card only

    spend(tenancy.org, date(2026, 11, 4), "30", project=tenancy.project)
    [at_80] = alerts_evaluate(organization=tenancy.org)
    delivery = at_80.deliveries.get(channel="webhook")
    with pytest.raises(DeliveryError, match="HTTP 401"):
        alert_delivery_send(delivery_id=delivery.pk)  # old secret no longer verifies
    receiver.secret = new_secret
    assert alert_delivery_send(delivery_id=delivery.pk) == "sent"  # the retry verifies with the new one
    assert receiver.answers == [200, 401, 200]


@pytest.mark.django_db
def test_only_the_budgets_managers_rotate_and_outsiders_get_404(tenancy: Tenancy) -> None:
    mine = budget(tenancy.org, "100", project=tenancy.project, webhook_url="https://hooks.acme.test/mine")
    org_wide = budget(tenancy.org, "500", webhook_url="https://hooks.acme.test/org")
    before = {b.pk: b.webhook_secret() for b in (mine, org_wide)}

    def rotate(user: Any, b: Budget, **kw: Any) -> int:
        return (
            client_for(user)
            .post(reverse("budget_webhook_rotate", args=["acme", b.public_id]), **kw)
            .status_code
        )

    for role in ("viewer", "finance"):
        assert rotate(getattr(tenancy, role), mine) == 403, role
        assert rotate(getattr(tenancy, role), mine, headers=HX) == 403, role
    assert rotate(tenancy.owner, org_wide) == 403  # the organization's budget is the admins'
    assert rotate(tenancy.outsider, mine) == 404
    assert (
        client_for(tenancy.outsider)
        .get(reverse("budget_webhook_rotate", args=["acme", mine.public_id]))
        .status_code
        == 404
    )
    for b in (mine, org_wide):
        b.refresh_from_db()
        assert b.webhook_secret() == before[b.pk]
    viewer_page = (
        client_for(tenancy.viewer).get(reverse("budget_edit", args=["acme", mine.public_id])).content.decode()
    )
    assert "Rotate signing secret" not in viewer_page
    assert before[mine.pk] not in viewer_page
    # A GET is not a rotation: it goes back to the edit page.
    got = client_for(tenancy.admin).get(reverse("budget_webhook_rotate", args=["acme", mine.public_id]))
    assert got.status_code == 302
    mine.refresh_from_db()
    assert mine.webhook_secret() == before[mine.pk]


@pytest.mark.django_db
def test_each_budget_signs_with_its_own_secret(tenancy: Tenancy) -> None:
    a = budget(tenancy.org, "100", project=tenancy.project, webhook_url="https://hooks.acme.test/a")
    b = budget(tenancy.org, "100", project=tenancy.other_project, webhook_url="https://hooks.acme.test/b")
    assert a.webhook_secret() != b.webhook_secret()
    rotated = client_for(tenancy.owner).post(reverse("budget_webhook_rotate", args=["acme", a.public_id]))
    assert rotated.status_code == 200 and revealed(rotated) is not None
    b_secret = Budget.objects.get(pk=b.pk).webhook_secret()
    assert b_secret == b.webhook_secret()  # the other project's receiver is untouched


@pytest.mark.django_db
def test_the_organization_webhook_secret_is_revealed_and_rotated_by_admins_only(tenancy: Tenancy) -> None:
    url = reverse("alert_webhook_rotate", args=["acme"])
    admin = client_for(tenancy.admin)
    assert admin.post(url).status_code == 400  # no webhook yet: nothing to rotate
    saved = admin.post(
        reverse("alert_list", args=["acme"]),
        {
            "policy-anomaly_factor": "3",
            "policy-anomaly_min_amount": "1",
            "policy-stale_after_hours": "6",
            "policy-webhook_url": "https://hooks.acme.test/org",
            "policy-recipients": "",
        },
    )
    first = revealed(saved)
    assert first is not None and "no-store" in saved["Cache-Control"]
    for role in ("viewer", "finance", "owner"):
        assert client_for(getattr(tenancy, role)).post(url).status_code == 403, role
    assert client_for(tenancy.outsider).post(url).status_code == 404
    assert AlertPolicy.objects.get(organization=tenancy.org).webhook_secret() == first
    second = revealed(admin.post(url, headers=HX))
    assert second is not None and second != first
    page = admin.get(reverse("alert_list", args=["acme"])).content.decode()
    assert second not in page and f"qbwh_…{second[-4:]}" in page


@pytest.mark.django_db
@time_machine.travel(MONTH_END, tick=False)
def test_a_budget_alert_without_its_own_webhook_is_signed_with_the_organizations_secret(
    tenancy: Tenancy, receiver: VerifyingReceiver
) -> None:
    policy = AlertPolicy.objects.create(organization=tenancy.org, webhook_url=receiver.url)
    receiver.secret = policy.webhook_secret()
    budget(tenancy.org, "100", project=tenancy.project, thresholds=[100])
    spend(tenancy.org, date(2026, 11, 3), "100", project=tenancy.project)
    [event] = alerts_evaluate(organization=tenancy.org)
    delivery = event.deliveries.get(channel="webhook")
    assert alert_delivery_send(delivery_id=delivery.pk) == "sent"
    assert receiver.answers == [200]
