"""Budget writes: save (with recipients) and delete. Evaluation against spend is in alerts.py."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from projects.models import Organization

from ..forms import BudgetForm
from ..models import Budget
from .alerts import webhook_secret_after_save


@transaction.atomic
def budget_save(*, form: BudgetForm, organization: Organization, user: User) -> tuple[Budget, str | None]:
    """Save a validated budget form in ``organization`` (and its member recipients).

    Return the budget and, when this save set or changed its webhook URL, the webhook's new signing
    secret: the caller shows it in this response and nowhere else. The caller has checked that
    ``user`` may manage the chosen project's budget.
    """
    budget: Budget = form.save(commit=False)
    budget.organization = organization
    if budget.pk is None:
        budget.created_by = user
    budget.save()
    form.save_m2m()
    secret = webhook_secret_after_save(
        signer=budget, url=budget.webhook_url, url_changed="webhook_url" in form.changed_data
    )
    return budget, secret


def budget_delete(*, budget: Budget) -> None:
    """Delete a budget and its alert history (alerts reference it by cascade)."""
    budget.delete()
