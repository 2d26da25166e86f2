"""Small builders for tests. Each returns a saved object with sensible defaults."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User

from projects.models import ApiKey, Membership, Organization, Project, ProviderAccount, Role
from usage.providers.base import UsageRow

_seq = itertools.count(1)


def make_user(username: str | None = None, **kwargs: Any) -> User:
    username = username or f"user{next(_seq)}"
    return User.objects.create_user(username=username, password="pw-" + username, **kwargs)


def make_org(
    name: str = "Acme", *, timezone: str = "UTC", currency: str = "USD", **kwargs: Any
) -> Organization:
    slug = kwargs.pop("slug", None) or f"{name.lower().replace(' ', '-')}-{next(_seq)}"
    return Organization.objects.create(name=name, slug=slug, timezone=timezone, currency=currency, **kwargs)


def make_member(org: Organization, role: str = Role.VIEWER, user: User | None = None) -> Membership:
    return Membership.objects.create(organization=org, user=user or make_user(), role=role)


def make_project(org: Organization, name: str = "Production app", **kwargs: Any) -> Project:
    slug = kwargs.pop("slug", None) or f"p{next(_seq)}"
    return Project.objects.create(organization=org, name=name, slug=slug, **kwargs)


def make_account(
    org: Organization, kind: str = "newapi", *, credential: str = "sk-test-credential-0000", **kwargs: Any
) -> ProviderAccount:
    n = next(_seq)
    account = ProviderAccount(
        organization=org,
        kind=kind,
        name=kwargs.pop("name", f"{kind} account {n}"),
        slug=kwargs.pop("slug", f"{kind}-{n}"),
        base_url=kwargs.pop("base_url", "http://127.0.0.1:9"),
        **kwargs,
    )
    account.set_credential(credential)
    account.save()
    return account


def make_key(
    org: Organization,
    *,
    project: Project | None = None,
    account: ProviderAccount | None = None,
    name: str = "key",
) -> ApiKey:
    n = next(_seq)
    return ApiKey.objects.create(
        organization=org,
        project=project,
        provider_account=account,
        name=f"{name}-{n}",
        external_id=f"{name}-{n}",
    )


def usage_row(
    when: datetime | None = None,
    *,
    model: str = "gpt-4o",
    cost: Decimal | str | None = "0.01",
    key: str = "",
    natural_key: str | None = None,
    **kwargs: Any,
) -> UsageRow:
    return UsageRow(
        occurred_at=when or datetime(2026, 10, 15, 12, tzinfo=UTC),
        model=model,
        natural_key=natural_key or f"row-{next(_seq)}",
        cost=Decimal(cost) if cost is not None else None,
        key_external_id=key,
        **kwargs,
    )
