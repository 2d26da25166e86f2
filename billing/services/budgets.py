"""Budget writes: save (with recipients) and delete. Evaluation against spend is in alerts.py."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from projects.models import Organization

from ..forms import BudgetForm
from ..models import Budget


@transaction.atomic
def budget_save(*, form: BudgetForm, organization: Organization, user: User) -> Budget:
    """Save a validated budget form in ``organization`` (and its member recipients); return the budget.

    The caller has checked that ``user`` may manage the chosen project's budget.
    """
    budget: Budget = form.save(commit=False)
    budget.organization = organization
    if budget.pk is None:
        budget.created_by = user
    budget.save()
    form.save_m2m()
    return budget


def budget_delete(*, budget: Budget) -> None:
    """Delete a budget and its alert history (alerts reference it by cascade)."""
    budget.delete()
