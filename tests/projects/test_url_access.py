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

        # With a webhook, so its signing card (hint, rotate button) is on the pages the walk opens.
        budget = Budget.objects.create(
            organization=t.org,
            project=t.project,
            monthly_amount=100,
            webhook_url="https://hooks.acme.test/qb",
        )
        return str(budget.public_id)

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
        "username": lambda: t.viewer.username,
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


# --- A1: the declared role matrix (18F tock pattern) ---------------------------------------------
# One row per named org URL: the status each role gets for GET / POST (an empty POST, with CSRF checks
# off, so the answer shows the role decision, not form validation). A URL missing from this table, or a
# row for a URL that no longer exists, fails the build. Anonymous 302s must go to the login page.
# Outsider and anonymous POSTs to read-only pages answer 405: the method check runs before tenancy
# there, and the answer is the same for an org that does not exist, so it reveals nothing.
ROLE_MATRIX_TABLE = """
name                 admin    finance  owner    viewer   outsider  anonymous
account_low_balance_edit 302/400 302/403 302/403 302/403 404/404  302/302
alert_ack            302/302  302/302  302/302  302/403  404/404   302/302
alert_list           200/200  200/403  200/403  200/403  404/404   302/302
alert_webhook_rotate 302/400  302/403  302/403  302/403  404/404   302/302
balance_detail       200/403  200/403  200/403  200/403  404/404   302/302
balance_list         200/405  200/405  200/405  200/405  404/405   302/405
budget_create        302/200  302/403  302/200  302/403  404/404   302/302
budget_delete        302/302  302/403  302/302  302/403  404/404   302/302
budget_edit          200/200  200/403  200/200  200/403  404/404   302/302
budget_list          200/405  200/405  200/405  200/405  404/405   302/405
budget_webhook_rotate 302/200 302/403  302/200  302/403  404/404   302/302
data_sources         200/405  200/405  200/405  200/405  404/405   302/405
data_sources_sync    405/302  405/403  405/403  405/403  404/404   302/302
import_create        405/400  405/400  405/403  405/403  404/404   302/302
import_detail        200/405  200/405  200/405  200/405  404/405   302/405
import_errors_csv    200/405  200/405  200/405  200/405  404/405   302/405
import_list          200/405  200/405  200/405  200/405  404/405   302/405
key_detail           200/405  200/405  200/405  200/405  404/405   302/405
key_list             200/405  200/405  200/405  200/405  404/405   302/405
member_create        405/400  405/403  405/403  405/403  404/404   302/302
member_list          200/405  200/405  200/405  200/405  404/405   302/405
member_remove        405/302  405/403  405/403  405/403  404/404   302/302
member_role          405/302  405/403  405/403  405/403  404/404   302/302
month_close          405/303  405/303  403/403  403/403  404/404   302/302
month_export_csv     200/405  200/405  200/405  200/405  404/405   302/405
month_export_focus   200/405  200/405  200/405  200/405  404/405   302/405
month_reopen         405/303  405/303  403/403  403/403  404/404   302/302
month_review         200/405  200/405  200/405  200/405  404/405   302/405
month_review_month   200/405  200/405  200/405  200/405  404/405   302/405
overview             200/405  200/405  200/405  200/405  404/405   302/405
project_detail       200/405  200/405  200/405  200/405  404/405   302/405
project_list         200/405  200/405  200/405  200/405  404/405   302/405
token_create         405/400  405/403  405/403  405/403  404/404   302/302
token_list           200/405  200/405  200/405  200/405  404/405   302/405
token_revoke         405/302  405/403  405/403  405/403  404/404   302/302
topup_create         200/200  200/200  403/403  403/403  404/404   302/302
topup_import         200/200  200/200  403/403  403/403  404/404   302/302
topup_list           200/405  200/405  200/405  200/405  404/405   302/405
usage_explorer       200/405  200/405  200/405  200/405  404/405   302/405
"""
ROLES = ("admin", "finance", "owner", "viewer", "outsider", "anonymous")


def _parse_matrix(table: str) -> dict[str, dict[str, tuple[int, int]]]:
    lines = [line.split() for line in table.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    assert tuple(header[1:]) == ROLES
    matrix = {}
    for name, *cells in rows:
        assert len(cells) == len(ROLES), name
        matrix[name] = {
            role: (int(cell.split("/")[0]), int(cell.split("/")[1]))
            for role, cell in zip(ROLES, cells, strict=True)
        }
    return matrix


ROLE_MATRIX = _parse_matrix(ROLE_MATRIX_TABLE)


def test_every_org_url_has_a_row_in_the_role_matrix() -> None:
    names = set(org_url_names())
    missing = sorted(names - ROLE_MATRIX.keys())
    stale = sorted(ROLE_MATRIX.keys() - names)
    assert not missing, f"add these URLs to ROLE_MATRIX_TABLE in {__file__}: {missing}"
    assert not stale, f"these rows name URLs that no longer exist: {stale}"


@pytest.mark.parametrize("name", sorted(ROLE_MATRIX))
def test_each_role_gets_the_declared_answer(name: str, tenancy: Tenancy) -> None:
    from django.db import transaction
    from django.test import Client

    mismatches = []
    for role in ROLES:
        expected_get, expected_post = ROLE_MATRIX[name][role]
        # Each cell starts from the same data: an admin's POST may delete what the next role reads.
        with transaction.atomic():
            url = build_url(name, tenancy)
            client = Client() if role == "anonymous" else client_for(getattr(tenancy, role))
            got = client.get(url)
            posted = client.post(url)
            if (got.status_code, posted.status_code) != (expected_get, expected_post):
                mismatches.append(
                    f"{role}: expected {expected_get}/{expected_post}, got {got.status_code}/{posted.status_code}"
                )
            if role == "anonymous":
                for response in (got, posted):
                    if response.status_code == 302:
                        assert response["Location"].startswith(reverse("login")), (
                            f"{name}: {response['Location']}"
                        )
            if role == "outsider":
                assert client.get(url, headers={"HX-Request": "true"}).status_code == 404
            transaction.set_rollback(True)
    assert not mismatches, f"{name}: " + "; ".join(mismatches)


def test_a_read_only_page_answers_a_post_the_same_for_a_missing_org(tenancy: Tenancy) -> None:
    """The outsider's 405 on read-only pages is not a tenancy oracle: a made-up org gets the same."""
    client = client_for(tenancy.outsider)
    assert client.post(reverse("overview", kwargs={"org_slug": "acme"})).status_code == 405
    assert client.post(reverse("overview", kwargs={"org_slug": "no-such-org"})).status_code == 405
    assert client.get(reverse("overview", kwargs={"org_slug": "no-such-org"})).status_code == 404


# The JSON API authenticates with ingest tokens only: a browser session, whatever its role, is anonymous.
API_MATRIX = {
    "api-v1:api-root": (404, 404),
    "api-v1:api-spend": (401, 405),
    "api-v1:api-balances": (401, 405),
    "api-v1:api-usage-push": (405, 401),
    # django-ninja serves the schema and docs for any method; both are public and read-only.
    "api-v1:openapi-json": (200, 200),
    "api-v1:openapi-view": (200, 200),
}


def test_every_api_url_has_a_row() -> None:
    names = {name for name, _ in _walk(get_resolver().url_patterns) if name.startswith("api")}
    assert names == API_MATRIX.keys()


@pytest.mark.parametrize("role", ROLES)
def test_api_urls_answer_every_role_as_declared(role: str, tenancy: Tenancy) -> None:
    from django.test import Client

    client = Client() if role == "anonymous" else client_for(getattr(tenancy, role))
    for name, (expected_get, expected_post) in API_MATRIX.items():
        url = reverse(name)
        got = (
            client.get(url).status_code,
            client.post(url, data="{}", content_type="application/json").status_code,
        )
        assert got == (expected_get, expected_post), f"{role} {name}: {got}"


@pytest.mark.parametrize("role", ROLES)
def test_org_roles_are_not_django_staff(role: str, tenancy: Tenancy) -> None:
    from django.test import Client

    client = Client() if role == "anonymous" else client_for(getattr(tenancy, role))
    for url in ("/admin/", "/admin/projects/provideraccount/", "/admin/auth/user/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), (role, url)
