"""A6: a role change applies on the signed-in user's next request; a deactivated user's session ends."""

from __future__ import annotations

import pytest
from django.test import Client

from projects.models import Membership, Role
from tests import factories
from tests.conftest import Tenancy


def signed_in(username: str) -> Client:
    client = Client()
    assert client.post("/login/", {"username": username, "password": f"pw-{username}"}).status_code == 302
    return client


@pytest.mark.django_db
def test_a_demoted_admin_loses_admin_actions_on_the_next_request(tenancy: Tenancy) -> None:
    account = factories.make_account(tenancy.org, "newapi", slug="gw")
    sync = f"/o/{tenancy.org.slug}/sources/{account.slug}/sync/"
    client = signed_in("admin")
    assert client.post(sync).status_code == 302
    Membership.objects.filter(user=tenancy.admin, organization=tenancy.org).update(role=Role.VIEWER)
    assert client.post(sync).status_code == 403
    assert client.post(f"/o/{tenancy.org.slug}/tokens/new/").status_code == 403
    # Still a member: reading goes on.
    assert client.get(f"/o/{tenancy.org.slug}/").status_code == 200


@pytest.mark.django_db
def test_a_removed_member_gets_404_on_the_next_request(tenancy: Tenancy) -> None:
    client = signed_in("finance")
    assert client.get(f"/o/{tenancy.org.slug}/").status_code == 200
    Membership.objects.filter(user=tenancy.finance, organization=tenancy.org).delete()
    assert client.get(f"/o/{tenancy.org.slug}/").status_code == 404


@pytest.mark.django_db
def test_a_deactivated_users_session_ends(tenancy: Tenancy) -> None:
    client = signed_in("owner")
    assert client.get(f"/o/{tenancy.org.slug}/").status_code == 200
    tenancy.owner.is_active = False
    tenancy.owner.save()
    response = client.get(f"/o/{tenancy.org.slug}/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert client.post("/login/", {"username": "owner", "password": "pw-owner"}).status_code == 200
