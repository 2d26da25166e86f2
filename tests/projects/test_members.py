"""The members page: admins add people, change roles and remove them; nobody else can (A6)."""

from __future__ import annotations

import logging

import pytest

from projects.models import Membership, Project, Role
from tests import factories
from tests.conftest import Tenancy, client_for


def _url(t: Tenancy, *parts: str) -> str:
    return "/".join([f"/o/{t.org.slug}/members", *parts, ""])


def _roles(t: Tenancy) -> dict[str, str]:
    return dict(Membership.objects.filter(organization=t.org).values_list("user__username", "role"))


@pytest.mark.django_db
def test_every_member_sees_who_is_in_the_organization_and_what_they_own(tenancy: Tenancy) -> None:
    html = client_for(tenancy.viewer).get(_url(tenancy)).content.decode()
    for name in ("admin", "finance", "owner", "viewer"):
        assert f'id="member-{name}"' in html
    assert "outsider" not in html  # a member of another organization only
    assert "Chat app" in html  # owner's project
    # Viewers read; the forms are for admins.
    assert "Add a member" not in html and 'name="role"' not in html
    admin_html = client_for(tenancy.admin).get(_url(tenancy)).content.decode()
    assert "Add a member" in admin_html and admin_html.count('<select id="role-') == 4


@pytest.mark.django_db
def test_finance_owner_and_viewer_cannot_manage_members(tenancy: Tenancy) -> None:
    newcomer = factories.make_user("newcomer")
    before = _roles(tenancy)
    for user in (tenancy.finance, tenancy.owner, tenancy.viewer):
        client = client_for(user)
        assert client.post(_url(tenancy, "add"), {"who": "newcomer", "role": "admin"}).status_code == 403
        assert client.post(_url(tenancy, user.username, "role"), {"role": "admin"}).status_code == 403
        assert client.post(_url(tenancy, "admin", "role"), {"role": "viewer"}).status_code == 403
        assert client.post(_url(tenancy, "admin", "remove")).status_code == 403
    assert _roles(tenancy) == before
    assert not Membership.objects.filter(user=newcomer).exists()


@pytest.mark.django_db
def test_an_admin_adds_by_username_or_email_and_the_new_member_gets_in(
    tenancy: Tenancy, caplog: pytest.LogCaptureFixture
) -> None:
    factories.make_user("dana", email="Dana@Example.com")
    client = client_for(tenancy.admin)
    with caplog.at_level(logging.INFO, logger="quotaboard.audit"):
        response = client.post(_url(tenancy, "add"), {"who": "dana@example.com", "role": "finance"})
    assert response.status_code == 302
    assert _roles(tenancy)["dana"] == Role.FINANCE
    assert "member added org=acme user=dana role=finance by=admin" in caplog.text
    dana = Membership.objects.get(user__username="dana").user
    assert client_for(dana).get(f"/o/{tenancy.org.slug}/").status_code == 200

    # Clear errors, nothing written: unknown account, already a member, bad role.
    for data, message in (
        ({"who": "nobody", "role": "viewer"}, "No account “nobody”."),
        ({"who": "viewer", "role": "viewer"}, "viewer is already a member (Viewer)."),
        ({"who": "dana", "role": "superuser"}, "Select a valid choice."),
    ):
        response = client.post(_url(tenancy, "add"), data)
        assert response.status_code == 400
        assert message in response.content.decode()
    assert len(_roles(tenancy)) == 5


@pytest.mark.django_db
def test_a_role_change_applies_on_the_next_request_and_is_audited(
    tenancy: Tenancy, caplog: pytest.LogCaptureFixture
) -> None:
    account = factories.make_account(tenancy.org, "newapi", slug="gw")
    viewer = client_for(tenancy.viewer)
    sync = f"/o/{tenancy.org.slug}/sources/{account.slug}/sync/"
    assert viewer.post(sync).status_code == 403
    with caplog.at_level(logging.INFO, logger="quotaboard.audit"):
        response = client_for(tenancy.admin).post(
            _url(tenancy, "viewer", "role"), {"role": "admin"}, headers={"HX-Request": "true"}
        )
    # htmx gets the member's row back, saying what changed.
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith('<tr id="member-viewer"')
    assert "Saved: now Admin." in html
    assert "member role changed org=acme user=viewer from=viewer to=admin by=admin" in caplog.text
    assert viewer.post(sync).status_code == 302


@pytest.mark.django_db
def test_the_last_admin_can_be_neither_demoted_nor_removed(tenancy: Tenancy) -> None:
    client = client_for(tenancy.admin)
    response = client.post(_url(tenancy, "admin", "role"), {"role": "viewer"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "admin is the only admin: make someone else admin first." in response.content.decode()
    response = client.post(_url(tenancy, "admin", "remove"), follow=True)
    assert "admin is the only admin" in response.content.decode()
    assert _roles(tenancy)["admin"] == Role.ADMIN

    # With a second admin, the first may step down, and is then sent back to the (read-only) list.
    client.post(_url(tenancy, "finance", "role"), {"role": "admin"})
    response = client.post(_url(tenancy, "admin", "role"), {"role": "viewer"}, headers={"HX-Request": "true"})
    assert response.status_code == 204 and response["HX-Redirect"] == _url(tenancy)
    assert _roles(tenancy)["admin"] == Role.VIEWER
    assert client.post(_url(tenancy, "finance", "remove")).status_code == 403


@pytest.mark.django_db
def test_removing_a_member_locks_them_out_and_unowns_their_projects(tenancy: Tenancy) -> None:
    owner = client_for(tenancy.owner)
    assert owner.get(f"/o/{tenancy.org.slug}/").status_code == 200
    response = client_for(tenancy.admin).post(_url(tenancy, "owner", "remove"), follow=True)
    assert (
        "owner removed from Acme AI. 1 project(s) they owned now have no owner." in response.content.decode()
    )
    assert owner.get(f"/o/{tenancy.org.slug}/").status_code == 404
    assert Project.objects.get(pk=tenancy.project.pk).owner is None


@pytest.mark.django_db
def test_htmx_remove_asks_first_and_sends_the_whole_page_back_to_the_list(tenancy: Tenancy) -> None:
    client = client_for(tenancy.admin)
    page = client.get(_url(tenancy)).content.decode()
    # The confirmation is htmx's (the CSP would block an inline onclick confirm).
    assert 'hx-confirm="Remove viewer from Acme AI? They lose access at once."' in page
    response = client.post(_url(tenancy, "viewer", "remove"), headers={"HX-Request": "true"})
    assert response.status_code == 204 and response["HX-Redirect"] == _url(tenancy)
    assert "viewer" not in _roles(tenancy)
    assert "viewer removed from Acme AI." in client.get(_url(tenancy)).content.decode()


@pytest.mark.django_db
def test_the_htmx_role_row_lists_the_projects_the_member_owns(tenancy: Tenancy) -> None:
    factories.make_project(tenancy.org, "Another", slug="another", owner=tenancy.owner)
    response = client_for(tenancy.admin).post(
        _url(tenancy, "owner", "role"), {"role": "finance"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert f"Another, {tenancy.project.name}" in html and "Saved: now Finance." in html


@pytest.mark.django_db
def test_members_of_another_organization_are_404_even_for_an_admin(tenancy: Tenancy) -> None:
    """The outsider is an admin of Globex: Acme's admin can neither see nor change them via Acme's URLs."""
    client = client_for(tenancy.admin)
    assert client.post(_url(tenancy, "outsider", "role"), {"role": "viewer"}).status_code == 404
    assert client.post(_url(tenancy, "outsider", "remove")).status_code == 404
    assert Membership.objects.get(user=tenancy.outsider).role == Role.ADMIN
    # And Globex's admin cannot reach Acme's members at all.
    outsider = client_for(tenancy.outsider)
    assert outsider.get(_url(tenancy)).status_code == 404
    assert outsider.post(_url(tenancy, "viewer", "remove")).status_code == 404
    assert _roles(tenancy)["viewer"] == Role.VIEWER
