"""Every URL pattern of an organization answers 404 to outsiders and sends anonymous users to login.

The test walks the URLconf, so a new URL is covered automatically; a URL kwarg it cannot fill
fails the build until URL_KWARGS learns it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.conftest import Tenancy, client_for

# URLs outside any organization, with what an outsider (signed in, member of another org) may see.
PUBLIC_NAMES = {"home", "login", "logout"}
NON_ORG_PREFIXES = ("admin:", "api")


def _walk(patterns: list[Any], namespace: str = "") -> Iterator[tuple[str, list[str]]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, ns)
        elif isinstance(entry, URLPattern) and entry.name:
            yield f"{namespace}{entry.name}", []


def org_url_names() -> list[str]:
    resolver = get_resolver()
    names = []
    for name, _ in _walk(resolver.url_patterns):
        if name in PUBLIC_NAMES or name.startswith(NON_ORG_PREFIXES):
            continue
        names.append(name)
    return sorted(set(names))


def _kwarg_names(name: str) -> set[str]:
    resolver = get_resolver()
    possibilities = resolver.reverse_dict.getlist(name.split(":")[-1]) if ":" not in name else []
    kwargs: set[str] = set()
    for possibility, _pattern, _defaults, _converters in possibilities:
        for _fmt, params in possibility:
            kwargs.update(params)
    return kwargs


def url_kwargs_builders(t: Tenancy) -> dict[str, Callable[[], Any]]:
    """A value from org "acme" for every URL kwarg. Add an entry when you add a URL kwarg."""
    from tests import factories

    def account_slug() -> str:
        return factories.make_account(t.org, slug="acct").slug

    def key_public_id() -> str:
        return str(factories.make_key(t.org, project=t.project).public_id)

    def budget_public_id() -> str:
        from billing.models import Budget

        return str(Budget.objects.create(organization=t.org, project=t.project, monthly_amount=100).public_id)

    def alert_public_id() -> str:
        from billing.models import AlertEvent

        return str(
            AlertEvent.objects.create(
                organization=t.org, kind="stale_data", period="2026-11", title="t", message="m"
            ).public_id
        )

    def token_public_id() -> str:
        from projects.services import ingest_token_create

        return str(ingest_token_create(organization=t.org, name="walk", created_by=None)[0].public_id)

    def import_public_id() -> str:
        from projects.models import ImportJob

        job = ImportJob.objects.create(
            organization=t.org, format="csv", original_name="a.csv", stored_name="x"
        )
        return str(job.public_id)

    return {
        "org_slug": lambda: t.org.slug,
        "project_slug": lambda: t.project.slug,
        "account_slug": account_slug,
        "key_id": key_public_id,
        "token_id": token_public_id,
        "import_id": import_public_id,
        "budget_id": budget_public_id,
        "alert_id": alert_public_id,
        "month": lambda: "2026-10",
    }


URL_KWARGS = url_kwargs_builders


def build_url(name: str, t: Tenancy) -> str:
    builders = URL_KWARGS(t)
    kwargs = {}
    for kwarg in _kwarg_names(name):
        assert kwarg in builders, f"URL {name!r} has kwarg {kwarg!r}: add it to URL_KWARGS in {__file__}"
        kwargs[kwarg] = builders[kwarg]()
    return reverse(name, kwargs=kwargs)


@pytest.mark.parametrize("name", org_url_names())
def test_outsider_gets_404_on_every_org_url(name: str, tenancy: Tenancy) -> None:
    url = build_url(name, tenancy)
    client = client_for(tenancy.outsider)
    assert client.get(url).status_code == 404, f"GET {url}"
    assert client.post(url).status_code in {404, 405}, f"POST {url}"
    assert client.get(url, headers={"HX-Request": "true"}).status_code == 404, f"htmx GET {url}"


@pytest.mark.parametrize("name", org_url_names())
def test_anonymous_is_sent_to_login_on_every_org_url(name: str, tenancy: Tenancy, client: Any) -> None:
    url = build_url(name, tenancy)
    response = client.get(url)
    assert response.status_code in {302, 401, 404}
    if response.status_code == 302:
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", org_url_names())
def test_members_can_open_every_org_page(name: str, tenancy: Tenancy) -> None:
    url = build_url(name, tenancy)
    response = client_for(tenancy.viewer).get(url)
    # Viewers read everything; pages that only accept POST answer 405, admin-only pages 403.
    assert response.status_code in {200, 302, 403, 405}, f"GET {url} -> {response.status_code}"


def test_the_walk_finds_the_overview() -> None:
    assert "overview" in org_url_names()
