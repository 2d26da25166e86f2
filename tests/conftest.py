"""Shared fixtures: an organization with an admin, finance, owner and viewer, and an outsider in another org."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from projects.models import Organization, Project, Role

from . import factories


@dataclass
class Tenancy:
    org: Organization
    other_org: Organization
    admin: User
    finance: User
    owner: User
    viewer: User
    outsider: User
    project: Project
    other_project: Project


@pytest.fixture
def tenancy(db: None) -> Tenancy:
    org = factories.make_org("Acme AI", slug="acme")
    other = factories.make_org("Globex", slug="globex")
    admin = factories.make_member(org, Role.ADMIN, factories.make_user("admin")).user
    finance = factories.make_member(org, Role.FINANCE, factories.make_user("finance")).user
    owner = factories.make_member(org, Role.OWNER, factories.make_user("owner")).user
    viewer = factories.make_member(org, Role.VIEWER, factories.make_user("viewer")).user
    outsider = factories.make_member(other, Role.ADMIN, factories.make_user("outsider")).user
    project = factories.make_project(org, "Chat app", slug="chat", owner=owner)
    other_project = factories.make_project(org, "Batch jobs", slug="batch")
    return Tenancy(org, other, admin, finance, owner, viewer, outsider, project, other_project)


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Debian's headless chromium through Playwright; a failure in CI when it is missing, a skip elsewhere."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is required in CI (.ci/run installs it)")
        pytest.skip(f"{CHROMIUM} is not installed; apt-get install chromium")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM use stays synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A desktop-sized page (1440 × 1000) that accepts downloads."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    yield context.new_page()
    context.close()
