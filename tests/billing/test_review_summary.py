"""Monthly summary e-mail: due after 07:00 on the 1st in the org's zone, sent once to finance members."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command

from billing import tasks
from billing.models import MonthEvent
from billing.services.summaries import summary_is_due
from billing.tasks import send_month_summary
from config.celery import app
from projects.models import Role
from tests import factories
from tests.conftest import Tenancy
from usage.services import usage_rows_upsert


@pytest.mark.django_db
def test_the_summary_is_due_from_seven_on_the_first_in_the_organizations_zone() -> None:
    org = factories.make_org("NY", timezone="America/New_York")
    assert (
        summary_is_due(organization=org, now=datetime(2026, 12, 1, 11, 59, tzinfo=UTC)) is None
    )  # 06:59 EST
    assert summary_is_due(organization=org, now=datetime(2026, 12, 1, 12, 0, tzinfo=UTC)) == date(2026, 11, 1)
    assert summary_is_due(organization=org, now=datetime(2026, 12, 2, 12, 0, tzinfo=UTC)) is None
    assert (
        app.conf.beat_schedule["dispatch-month-summaries"]["task"] == "billing.tasks.dispatch_month_summaries"
    )


@pytest.mark.django_db
@time_machine.travel(datetime(2026, 12, 1, 13, tzinfo=UTC), tick=False)
def test_finance_members_get_last_months_summary_once(tenancy: Tenancy) -> None:
    tenancy.finance.email = "finance@acme.test"
    tenancy.finance.save()
    tenancy.viewer.email = "viewer@acme.test"
    tenancy.viewer.save()
    account = factories.make_account(tenancy.org, "newapi")
    usage_rows_upsert(
        organization=tenancy.org,
        rows=[factories.usage_row(datetime(2026, 11, 5, tzinfo=UTC), cost="12.34")],
        account=account,
    )
    assert send_month_summary(tenancy.org.pk, "2026-11") == 1
    assert send_month_summary(tenancy.org.pk, "2026-11") == 0  # a redelivered task sends nothing
    [message] = mail.outbox
    assert message.to == ["finance@acme.test"]
    assert "November 2026" in message.subject
    assert "$12.34" in message.body
    assert "/o/acme/review/2026-11/" in message.body
    assert "sk-test-credential" not in message.body
    assert MonthEvent.objects.filter(kind="summary_sent").count() == 1

    call_command("send_month_summary", "--org", "acme", "--month", "2026-11")
    assert len(mail.outbox) == 2  # the command sends on request
    call_command("send_month_summary", "--org", "acme", "--month", "2026-11", "--once")
    assert len(mail.outbox) == 2


@pytest.mark.django_db
def test_the_beat_task_mails_each_organization_once_after_its_own_first_of_month_morning(
    tenancy: Tenancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenancy.finance.email = "finance@acme.test"
    tenancy.finance.save()
    ny = factories.make_org("NY", slug="ny", timezone="America/New_York")
    factories.make_member(ny, Role.FINANCE, factories.make_user("ny-finance", email="finance@ny.test"))
    # Run the enqueued task in process, as a worker would.
    monkeypatch.setattr(
        tasks.send_month_summary, "delay", lambda *args: tasks.send_month_summary.apply(args=args)
    )

    def beat_at(moment: datetime) -> list[str]:
        with time_machine.travel(moment, tick=False):
            tasks.dispatch_month_summaries()
        return sorted(address for message in mail.outbox for address in message.to)

    assert beat_at(datetime(2026, 11, 30, 23, 7, tzinfo=UTC)) == []  # not the 1st anywhere yet
    assert beat_at(datetime(2026, 12, 1, 7, 7, tzinfo=UTC)) == ["finance@acme.test"]  # 02:07 in New York
    assert beat_at(datetime(2026, 12, 1, 12, 7, tzinfo=UTC)) == ["finance@acme.test", "finance@ny.test"]
    assert beat_at(datetime(2026, 12, 1, 13, 7, tzinfo=UTC)) == ["finance@acme.test", "finance@ny.test"]
    assert all("November 2026" in message.subject for message in mail.outbox)
