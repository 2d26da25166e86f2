"""Ingest tokens: created and revoked by admins, secret shown once, stored as a hash, checked in constant time."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from projects.models import IngestToken
from projects.services import ingest_token_authenticate, ingest_token_create, ingest_token_revoke
from tests import factories
from tests.conftest import Tenancy, client_for


def list_url(t: Tenancy) -> str:
    return reverse("token_list", kwargs={"org_slug": t.org.slug})


def create_url(t: Tenancy) -> str:
    return reverse("token_create", kwargs={"org_slug": t.org.slug})


def test_an_admin_creates_a_token_and_sees_the_secret_exactly_once(tenancy: Tenancy) -> None:
    client = client_for(tenancy.admin)

    created = client.post(create_url(tenancy), {"name": "backend", "project": "chat"})
    listed = client.get(list_url(tenancy))

    token = IngestToken.objects.get()
    secret = created.context["new_secret"]
    assert created.status_code == 200
    assert secret.startswith(token.prefix + "_") and len(token.prefix) == 12
    assert secret in created.content.decode()
    assert "no-store" in created["Cache-Control"]
    assert secret not in listed.content.decode()
    assert token.prefix in listed.content.decode()
    assert token.project == tenancy.project
    assert token.created_by == tenancy.admin


def test_only_the_sha256_of_the_secret_is_stored(tenancy: Tenancy) -> None:
    token, secret = ingest_token_create(organization=tenancy.org, name="x", created_by=None)
    row = IngestToken.objects.filter(pk=token.pk).values().get()
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert not any(secret in str(value) for value in row.values())


def test_authenticate_accepts_only_live_tokens_with_the_exact_secret(tenancy: Tenancy) -> None:
    live, live_secret = ingest_token_create(organization=tenancy.org, name="a", created_by=None)
    revoked, revoked_secret = ingest_token_create(organization=tenancy.org, name="b", created_by=None)
    _expired, expired_secret = ingest_token_create(
        organization=tenancy.org, name="c", created_by=None, expires_at=timezone.now() - timedelta(minutes=1)
    )
    ingest_token_revoke(token=revoked)

    assert ingest_token_authenticate(live_secret) == live
    assert ingest_token_authenticate(live_secret + "x") is None
    assert ingest_token_authenticate(live_secret[:-1]) is None
    assert ingest_token_authenticate(revoked_secret) is None
    assert ingest_token_authenticate(expired_secret) is None
    assert ingest_token_authenticate("qbt_00000000_nothing") is None
    assert ingest_token_authenticate("") is None


def test_the_hash_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch, tenancy: Tenancy) -> None:
    from projects import services

    calls: list[tuple[str, str]] = []
    real = services.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(services.hmac, "compare_digest", spy)
    token, secret = ingest_token_create(organization=tenancy.org, name="a", created_by=None)
    ingest_token_authenticate(secret)
    assert calls == [(hashlib.sha256(secret.encode()).hexdigest(), token.secret_hash)]


@pytest.mark.parametrize("role", ["finance", "owner", "viewer"])
def test_non_admins_read_the_list_but_cannot_create_or_revoke(tenancy: Tenancy, role: str) -> None:
    token, _ = ingest_token_create(organization=tenancy.org, name="keep", created_by=None)
    client = client_for(getattr(tenancy, role))

    assert client.get(list_url(tenancy)).status_code == 200
    assert client.post(create_url(tenancy), {"name": "mine"}).status_code == 403
    revoke = reverse("token_revoke", kwargs={"org_slug": tenancy.org.slug, "token_id": token.public_id})
    assert client.post(revoke).status_code == 403
    assert IngestToken.objects.filter(revoked_at__isnull=True).count() == 1


def test_an_admin_revokes_a_token(tenancy: Tenancy) -> None:
    token, secret = ingest_token_create(organization=tenancy.org, name="old", created_by=None)
    revoke = reverse("token_revoke", kwargs={"org_slug": tenancy.org.slug, "token_id": token.public_id})

    response = client_for(tenancy.admin).post(revoke)

    assert response.status_code == 302
    assert ingest_token_authenticate(secret) is None


def test_another_orgs_project_is_a_form_error_not_a_token(tenancy: Tenancy) -> None:
    factories.make_project(tenancy.other_org, "Theirs", slug="theirs")
    response = client_for(tenancy.admin).post(create_url(tenancy), {"name": "x", "project": "theirs"})
    assert response.status_code == 400
    assert IngestToken.objects.count() == 0


def test_outsiders_get_404_on_token_pages_and_cannot_revoke(tenancy: Tenancy) -> None:
    token, secret = ingest_token_create(organization=tenancy.org, name="x", created_by=None)
    client = client_for(tenancy.outsider)
    revoke = reverse("token_revoke", kwargs={"org_slug": tenancy.org.slug, "token_id": token.public_id})
    # The outsider is admin of their own org: their org slug with our token id is 404 too.
    swapped = reverse(
        "token_revoke", kwargs={"org_slug": tenancy.other_org.slug, "token_id": token.public_id}
    )

    assert client.get(list_url(tenancy)).status_code == 404
    assert client.post(create_url(tenancy), {"name": "x"}).status_code == 404
    assert client.post(revoke).status_code == 404
    assert client.post(swapped).status_code == 404
    assert ingest_token_authenticate(secret) is not None


def test_the_empty_list_says_what_to_do(tenancy: Tenancy) -> None:
    html = client_for(tenancy.viewer).get(list_url(tenancy)).content.decode()
    assert "No ingest tokens yet." in html
    assert "An organization admin can create one." in html


def test_the_token_list_runs_a_fixed_number_of_queries(
    tenancy: Tenancy, django_assert_max_num_queries: Any
) -> None:
    for n in range(5):
        ingest_token_create(
            organization=tenancy.org, name=f"t{n}", created_by=tenancy.admin, project=tenancy.project
        )
    client = client_for(tenancy.admin)
    with django_assert_max_num_queries(8):
        assert client.get(list_url(tenancy)).status_code == 200
