"""The monthly summary e-mail to finance: last month's totals, drivers and reconciliation, with a link."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse

from projects.models import Organization, Role
from projects.money import format_money

from .. import rules
from ..models import MonthEvent, MonthEventKind
from ..review import month_label, month_review

# Sent once the organization's local clock passes 07:00 on the 1st, so it lands at the start of the day.
SEND_FROM_HOUR = 7


def summary_is_due(*, organization: Organization, now: datetime) -> date | None:
    """Return the month to summarise when it is the 1st, 07:00 or later, in the organization's zone."""
    local = now.astimezone(organization.zoneinfo)
    if local.day != 1 or local.hour < SEND_FROM_HOUR:
        return None
    return rules.add_months(local.date(), -1)


def finance_recipients(organization: Organization) -> list[str]:
    """E-mail addresses of the organization's finance members (active users with an address)."""
    return sorted(
        User.objects.filter(
            memberships__organization=organization, memberships__role=Role.FINANCE, is_active=True
        )
        .exclude(email="")
        .values_list("email", flat=True)
    )


def summary_text(*, organization: Organization, month: date, today: date) -> tuple[str, str]:
    """Return (subject, body) of the summary: totals with change, top drivers, reconciliation flags."""
    review = month_review(organization=organization, month=month, today=today)
    url = settings.SITE_URL.rstrip("/") + reverse(
        "month_review_month", kwargs={"org_slug": organization.slug, "month": month_label(month)}
    )
    lines = [f"{organization.name}: cost review for {month:%B %Y} ({organization.timezone}).", ""]
    if not review.totals:
        lines.append("No usage was recorded this month.")
    for total in review.totals:
        change = total.change_percent
        pct = f", {change.quantize(Decimal('0.1'))}%" if change is not None else ""
        lines.append(
            f"Spend {total.currency}: {format_money(total.cost, total.currency)} "
            f"(previous month {format_money(total.previous_cost, total.currency)}{pct}), "
            f"{total.requests:,} requests."
        )
    if review.drivers:
        lines += ["", "Top cost drivers:"]
        lines += [f"- {d.key_name} / {d.model}: {d.explanation}" for d in review.drivers]
    flagged = [r for r in review.reconciliation if r.flagged]
    if flagged:
        lines += ["", "Balances that do not reconcile:"]
        lines += [
            f"- {r.account.name}: difference {format_money(r.difference, r.currency, 6)}. {r.cause}"
            for r in flagged
        ]
    lines += ["", f"Review and close the month: {url}"]
    subject = f"[Quotaboard] {organization.name}: {month:%B %Y} cost review"
    return subject, "\n".join(lines)


def month_summary_send(*, organization: Organization, month: date, today: date, force: bool = False) -> int:
    """E-mail the month's summary to finance members; return how many were addressed (0: nothing sent).

    Once per (organization, month): the ``summary_sent`` audit row is inserted in the same
    transaction as the send, so a redelivered task finds it and stops; ``force`` (the management
    command) sends again and keeps the first row. A crash after the SMTP hand-off but before the
    commit can send twice; it never sends zero times.
    """
    recipients = finance_recipients(organization)
    if not recipients:
        return 0
    subject, body = summary_text(organization=organization, month=month, today=today)
    try:
        with transaction.atomic():
            if (
                not force
                or not MonthEvent.objects.filter(
                    organization=organization, month=month, kind=MonthEventKind.SUMMARY_SENT
                ).exists()
            ):
                MonthEvent.objects.create(
                    organization=organization,
                    month=month,
                    kind=MonthEventKind.SUMMARY_SENT,
                    reason=f"to {len(recipients)} finance member(s)",
                )
            send_mail(subject, body, None, recipients)
    except IntegrityError:
        return 0  # already sent for this month
    return len(recipients)
