"""The Celery app and the beat schedule (all periodic work is declared here, in code)."""

from __future__ import annotations

import os

from celery import Celery

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
