"""F8 (settings half): the broker's visibility timeout outlasts every task, or `manage.py check` fails.

Redis redelivers a message nobody acknowledged within visibility_timeout. With task_acks_late a
running task is unacknowledged until it ends, and a retry with a countdown waits unacknowledged
in the worker; either outliving the timeout means the same work delivered twice.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import run_checks

from config.celery import app
from projects.checks import longest_unacked_seconds


def _errors() -> list[str]:
    return [m.id for m in run_checks() if m.id and m.id.startswith("quotaboard.")]


def test_the_configured_visibility_timeout_outlasts_every_task(settings: Any) -> None:
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    longest, cause = longest_unacked_seconds()
    assert 0 < longest < 3600, cause
    assert _errors() == []


def test_a_visibility_timeout_at_or_below_the_longest_task_fails_the_check(settings: Any) -> None:
    longest, _cause = longest_unacked_seconds()
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": longest}
    assert _errors() == ["quotaboard.E001"]
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": longest + 1}
    assert _errors() == []


def test_the_alert_retry_countdown_and_ingest_backoff_are_counted(settings: Any) -> None:
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 1000}
    assert _errors() == ["quotaboard.E001"]  # deliver_alert may wait 1,800 s before its retry


def test_the_six_hour_import_does_not_ack_late() -> None:
    # Its 6 h limit would otherwise exceed any sane visibility timeout (found by this check).
    assert app.tasks["usage.tasks.run_import"].acks_late is False
    assert app.tasks["usage.tasks.ingest_account_usage"].acks_late is True
