"""The Celery app and the beat schedule (all periodic work is declared here, in code)."""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("quotaboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    # The database, not the broker, is the source of truth: tasks are idempotent, so a redelivery is safe.
    task_acks_late=True,
    task_reject_on_worker_lost=False,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
app.autodiscover_tasks()

# Every periodic job, in code. Entries are added by the app that owns the job; see README "Schedule".
app.conf.beat_schedule = {}

# Ingestion (usage app / billing app). The dispatchers run every minute and enqueue only the accounts
# whose own interval has passed (ProviderAccount overrides, else QB_USAGE_INTERVAL_MINUTES=5 and
# QB_BALANCE_INTERVAL_MINUTES=15), so admins tune frequency without touching this schedule.
app.conf.beat_schedule.update(
    {
        # What: enqueue ingest_account_usage for due accounts. When: every minute. Why: usage data
        # should be minutes old on the dashboard. Runtime: < 1 s (two queries + enqueues).
        "dispatch-usage-ingests": {
            "task": "usage.tasks.dispatch_usage_ingests",
            "schedule": crontab(minute="*"),
            "options": {"expires": 55},
        },
        # What: enqueue poll_account_balance for due accounts. When: every minute (each account every
        # 15 min by default). Why: low-balance alerts; providers ask not to be polled hard. Runtime: < 1 s.
        "dispatch-balance-polls": {
            "task": "billing.tasks.dispatch_balance_polls",
            "schedule": crontab(minute="*"),
            "options": {"expires": 55},
        },
    }
)

# Alerts (billing app).
app.conf.beat_schedule.update(
    {
        # What: evaluate budget thresholds, forecasts, low balance, anomalies and stale data for every
        # organization, then enqueue deliveries. When: every 10 minutes. Why: alerts should trail spend
        # by minutes; each alert is raised once per period, so re-running is harmless. Runtime: < 1 s per org.
        "evaluate-alerts": {
            "task": "billing.tasks.evaluate_alerts",
            "schedule": crontab(minute="*/10"),
            "options": {"expires": 540},
        },
    }
)

# Month review (billing app, finance).
app.conf.beat_schedule.update(
    {
        # What: e-mail last month's cost summary (with a link to the month review) to finance members.
        # When: hourly at :07; each organization is sent once, after 07:00 on the 1st in its own zone
        # (the 1st starts at a different UTC hour per zone). Why: finance closes the month early in the
        # new month. Runtime: < 1 s to dispatch; one review computation per organization, once a month.
        # Twin: manage.py send_month_summary [--org SLUG] [--month YYYY-MM].
        "dispatch-month-summaries": {
            "task": "billing.tasks.dispatch_month_summaries",
            "schedule": crontab(minute="7"),
            "options": {"expires": 3000},
        },
    }
)
