"""System checks that fail `manage.py check` (and so the build) on unsafe deployment settings."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, register

# Celery's own default when a task sets retry_backoff without retry_backoff_max.
CELERY_DEFAULT_RETRY_BACKOFF_MAX = 600


def longest_unacked_seconds() -> tuple[int, str]:
    """Return the longest time a message can stay unacknowledged at the broker, and what causes it.

    That is, per task: its hard time limit if it acks late, its autoretry backoff cap, and the
    countdown cap it declares as ``max_countdown`` when it calls ``self.retry(countdown=...)``.
    """
    from config.celery import app

    # What autodiscover_tasks would import; app.loader.import_default_modules() would re-run the
    # Django checks from Celery's Django fixup and recurse into this one.
    for app_config in apps.get_app_configs():
        if importlib.util.find_spec(f"{app_config.name}.tasks") is not None:
            importlib.import_module(f"{app_config.name}.tasks")
    longest, cause = 0, ""
    for name, task in app.tasks.items():
        if name.startswith("celery."):
            continue
        candidates: list[tuple[int, str]] = []
        if task.acks_late:
            limit = task.time_limit or app.conf.task_time_limit or 0
            candidates.append((int(limit), f"{name} time_limit (acks_late)"))
        if getattr(task, "autoretry_for", ()) and getattr(task, "retry_backoff", False):
            cap = getattr(task, "retry_backoff_max", None) or CELERY_DEFAULT_RETRY_BACKOFF_MAX
            candidates.append((int(cap), f"{name} retry_backoff_max"))
        countdown = getattr(task, "max_countdown", None)
        if countdown:
            candidates.append((int(countdown), f"{name} max_countdown"))
        for seconds, why in candidates:
            if seconds > longest:
                longest, cause = seconds, why
    return longest, cause


@register("celery", deploy=False)
def visibility_timeout_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """F8: Redis redelivers an unacked message after visibility_timeout; it must outlast every task."""
    vt = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
    if vt is None:  # the embedded file-system broker has no visibility timeout
        return []
    longest, cause = longest_unacked_seconds()
    if int(vt) <= longest:  # type: ignore[call-overload]
        return [
            Error(
                f"Celery visibility_timeout is {vt} s but {cause} allows {longest} s: a running or "
                "waiting task would be delivered twice.",
                hint="Raise CELERY_VISIBILITY_TIMEOUT or shorten that task's limit.",
                id="quotaboard.E001",
            )
        ]
    return []
