"""Shared fixtures: an organization with an admin, finance, owner and viewer, and an outsider in another org."""

from __future__ import annotations

from dataclasses import dataclass

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
