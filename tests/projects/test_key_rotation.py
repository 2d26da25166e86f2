"""S2: secrets at rest are Fernet tokens; `rotate_encryption_key` moves every row to the newest key.

The column is read with raw SQL, so the test sees what a database dump would show.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from billing.models import AlertPolicy, Budget
from projects import encryption
from projects.models import ProviderAccount
from tests import factories
from tests.conftest import Tenancy

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> Iterator[None]:
    encryption.reset_key_cache()
    yield
    encryption.reset_key_cache()


def raw_column(table: str, column: str) -> dict[int, str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, {column} FROM {table} ORDER BY id")
        return dict(cursor.fetchall())


def use_keys(*keys: str) -> override_settings:
    encryption.reset_key_cache()
    return override_settings(ENCRYPTION_KEYS=list(keys))


@pytest.mark.django_db
def test_rotation_moves_every_secret_to_the_new_key_resumably_and_idempotently(tenancy: Tenancy) -> None:
    canaries = [f"qb-canary-{uuid.uuid4()}" for _ in range(5)]
    with use_keys(OLD_KEY):
        accounts = [factories.make_account(tenancy.org, credential=c) for c in canaries]
        policy = AlertPolicy.objects.create(organization=tenancy.org)
        webhook_secret = policy.webhook_secret()
        budget = Budget.objects.create(
            organization=tenancy.org, monthly_amount=100, webhook_url="https://hooks.acme.test/qb"
        )
        budget_secret = budget.webhook_secret()
    table = ProviderAccount._meta.db_table
    before = raw_column(table, "credential_encrypted")
    for pk, canary in zip([a.pk for a in accounts], canaries, strict=True):
        assert canary not in before[pk]
        assert Fernet(OLD_KEY.encode()).decrypt(before[pk].encode()).decode() == canary

    # A run that dies half-way: only the first two rows were rewritten before the kill.
    with use_keys(NEW_KEY, OLD_KEY):
        for account in accounts[:2]:
            token = raw_column(table, "credential_encrypted")[account.pk]
            ProviderAccount.objects.filter(pk=account.pk).update(
                credential_encrypted=encryption.rotate(token)
            )
        out = StringIO()
        call_command("rotate_encryption_key", stdout=out)
        assert (
            "projects.ProviderAccount.credential_encrypted: 3 re-encrypted, 2 already current"
            in out.getvalue()
        )
        assert (
            "billing.AlertPolicy.webhook_secret_encrypted: 1 re-encrypted, 0 already current"
            in out.getvalue()
        )
        assert "billing.Budget.webhook_secret_encrypted: 1 re-encrypted, 0 already current" in out.getvalue()
        after_first = raw_column(table, "credential_encrypted")
        again = StringIO()
        call_command("rotate_encryption_key", stdout=again)
        assert "credential_encrypted: 0 re-encrypted, 5 already current" in again.getvalue()
        assert raw_column(table, "credential_encrypted") == after_first  # a second run writes nothing

    # Drop the old key: everything still opens with the new key alone, and never held plaintext.
    with use_keys(NEW_KEY):
        for account, canary in zip(accounts, canaries, strict=True):
            stored = after_first[account.pk]
            assert canary not in stored and stored.startswith("gAAAAA")
            assert Fernet(NEW_KEY.encode()).decrypt(stored.encode()).decode() == canary
            account.refresh_from_db()
            assert account.get_credential() == canary
        policy.refresh_from_db()
        assert policy.webhook_secret() == webhook_secret
        budget.refresh_from_db()
        assert budget.webhook_secret() == budget_secret
        assert (
            Fernet(NEW_KEY.encode()).decrypt(budget.webhook_secret_encrypted.encode()).decode()
            == budget_secret
        )


@pytest.mark.django_db
def test_a_secret_no_key_opens_fails_loudly_never_as_an_empty_secret(tenancy: Tenancy) -> None:
    with use_keys(OLD_KEY):
        account = factories.make_account(tenancy.org, credential="sk-live-abcdefgh")
    with use_keys(NEW_KEY):
        account.refresh_from_db()
        with pytest.raises(ImproperlyConfigured):
            account.get_credential()
        with pytest.raises(ImproperlyConfigured):
            call_command("rotate_encryption_key", stdout=StringIO())
    with use_keys(OLD_KEY):
        account.refresh_from_db()
        assert account.get_credential() == "sk-live-abcdefgh"  # the failed run destroyed nothing


@pytest.mark.django_db
def test_a_malformed_key_is_refused_as_a_configuration_error() -> None:
    with use_keys("not-a-fernet-key"), pytest.raises(ImproperlyConfigured):
        encryption.encrypt("x")
