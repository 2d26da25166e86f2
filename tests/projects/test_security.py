"""A3/A4: security headers, CSRF on forms, and sign-in throttling."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client, override_settings

from tests import factories
from tests.conftest import Tenancy, client_for
from tests.projects.test_url_access import build_url, org_url_names


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    cache.clear()


@pytest.mark.django_db
def test_pages_carry_a_csp_without_inline_scripts(tenancy: Tenancy) -> None:
    response = client_for(tenancy.viewer).get(f"/o/{tenancy.org.slug}/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert "object-src 'none'" in csp and "base-uri 'none'" in csp and "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert "<script>" not in response.content.decode().replace("<script src", "")


@pytest.mark.django_db
def test_login_form_rejects_a_post_without_csrf_token() -> None:
    factories.make_user("carol")
    client = Client(enforce_csrf_checks=True)
    assert client.post("/login/", {"username": "carol", "password": "pw-carol"}).status_code == 403


@pytest.mark.django_db
def test_login_rotates_the_session_key_and_logout_ends_it() -> None:
    factories.make_user("dave")
    client = Client()
    client.get("/login/")
    client.cookies["sessionid"] = "pre-login-session"
    response = client.post("/login/", {"username": "dave", "password": "pw-dave"})
    assert response.status_code == 302
    session_key = client.cookies["sessionid"].value
    assert session_key != "pre-login-session"
    client.post("/logout/")
    assert client.get("/").status_code == 302  # back to the login page


@pytest.mark.django_db
@override_settings(LOGIN_FAILURE_LIMIT_PER_USER=5, LOGIN_FAILURE_LIMIT_PER_IP=100)
def test_repeated_failures_lock_the_user_out_even_with_the_right_password() -> None:
    factories.make_user("erin")
    client = Client()
    for _ in range(5):
        assert client.post("/login/", {"username": "erin", "password": "wrong"}).status_code == 200
    locked = client.post("/login/", {"username": "erin", "password": "pw-erin"})
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.content.decode()
    assert int(locked["Retry-After"]) > 0
    # An unknown user gets the same answer after the same number of failures.
    for _ in range(5):
        client.post("/login/", {"username": "nobody", "password": "x"})
    unknown = client.post("/login/", {"username": "nobody", "password": "x"})
    assert unknown.status_code == 429 and unknown.content.decode().count("Too many") == 1
    # Another user is unaffected.
    factories.make_user("frank")
    assert Client().post("/login/", {"username": "frank", "password": "pw-frank"}).status_code == 302


@pytest.mark.django_db
@override_settings(LOGIN_FAILURE_LIMIT_PER_USER=100, LOGIN_FAILURE_LIMIT_PER_IP=8)
def test_one_address_trying_many_usernames_is_throttled() -> None:
    client = Client()
    for n in range(8):
        client.post("/login/", {"username": f"guess{n}", "password": "x"})
    assert client.post("/login/", {"username": "guess-next", "password": "x"}).status_code == 429


@pytest.mark.parametrize("name", org_url_names())
def test_every_org_url_refuses_a_post_without_csrf_token(name: str, tenancy: Tenancy) -> None:
    """A3: an admin's session alone cannot POST anywhere (forms and htmx endpoints alike)."""
    url = build_url(name, tenancy)
    client = Client(enforce_csrf_checks=True)
    client.force_login(tenancy.admin)
    # The CSRF check runs before the view, so even read-only pages answer 403 rather than 405.
    assert client.post(url).status_code == 403, url
    assert client.post(url, headers={"HX-Request": "true"}).status_code == 403, url


@pytest.mark.django_db
def test_a_session_key_stolen_before_logout_is_dead_after_it(tenancy: Tenancy) -> None:
    client = Client()
    assert client.post("/login/", {"username": "viewer", "password": "pw-viewer"}).status_code == 302
    stolen = client.cookies["sessionid"].value
    replay = Client()
    replay.cookies["sessionid"] = stolen
    assert replay.get(f"/o/{tenancy.org.slug}/").status_code == 200  # the stolen cookie works while signed in
    client.post("/logout/")
    after = replay.get(f"/o/{tenancy.org.slug}/")
    assert after.status_code == 302 and after["Location"].startswith("/login/")


def test_no_template_carries_inline_script_or_event_handler_attributes() -> None:
    """The CSP blocks inline scripts, so an ``onclick=`` would silently do nothing (a confirm skipped)."""
    handler = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE | re.DOTALL)
    inline = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE)
    found = []
    for path in sorted(Path("templates").rglob("*.html")):
        text = path.read_text()
        found += [f"{path}: {m.group(0)[:60]}" for m in handler.finditer(text)]
        found += [f"{path}: {m.group(0)}" for m in inline.finditer(text)]
    assert found == []
