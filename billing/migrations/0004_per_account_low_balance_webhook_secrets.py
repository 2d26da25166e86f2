"""Low-balance thresholds move from the organization's alert policy onto each provider account; budgets
get their own webhook signing secret, with a hint column for what pages may show of it.

Existing data keeps behaving the same:
- every account of an organization that had an alert policy gets that policy's runway days and
  amount (organizations without a policy were on the defaults, which are the new columns' defaults);
- every budget with a webhook gets a copy of its organization's current signing secret (the same
  Fernet token), so receivers see the same signatures until someone rotates the budget's secret.
  No hint is copied: that secret was never shown, and the page says to rotate to get one.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models


def copy_org_thresholds_and_secrets(apps: Any, schema_editor: Any) -> None:
    """Copy each organization's low-balance thresholds onto its accounts, its webhook secret onto its
    budgets that have a webhook. Idempotent: running it twice writes the same values."""
    AlertPolicy = apps.get_model("billing", "AlertPolicy")
    ProviderAccount = apps.get_model("projects", "ProviderAccount")
    Budget = apps.get_model("billing", "Budget")
    for policy in AlertPolicy.objects.all().iterator():
        ProviderAccount.objects.filter(organization_id=policy.organization_id).update(
            low_balance_runway_days=policy.low_balance_runway_days,
            low_balance_amount=policy.low_balance_amount,
        )
        if policy.webhook_secret_encrypted:
            Budget.objects.filter(
                organization_id=policy.organization_id, webhook_secret_encrypted=""
            ).exclude(webhook_url="").update(webhook_secret_encrypted=policy.webhook_secret_encrypted)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0003_month_close"),
        ("projects", "0003_account_low_balance_thresholds"),
    ]

    operations = [
        migrations.AddField(
            model_name="alertpolicy",
            name="webhook_secret_hint",
            field=models.CharField(blank=True, editable=False, max_length=16),
        ),
        migrations.AddField(
            model_name="budget",
            name="webhook_secret_encrypted",
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.AddField(
            model_name="budget",
            name="webhook_secret_hint",
            field=models.CharField(blank=True, editable=False, max_length=16),
        ),
        # Backwards the org-level columns come back with their defaults; per-account values stay on
        # the accounts (there is no single organization value to rebuild from them).
        migrations.RunPython(copy_org_thresholds_and_secrets, migrations.RunPython.noop, elidable=False),
        migrations.RemoveField(model_name="alertpolicy", name="low_balance_amount"),
        migrations.RemoveField(model_name="alertpolicy", name="low_balance_runway_days"),
    ]
