"""Thin Celery tasks: JSON arguments (ids, ISO dates), load objects, call one service."""

from __future__ import annotations

from datetime import date

from celery import shared_task

from projects.models import Organization

from . import services


@shared_task(acks_late=True, soft_time_limit=600, time_limit=660)
def rebuild_rollups(organization_id: int, since_iso: str | None = None) -> int:
    """Recompute an organization's rollups from raw records; returns daily rows written. Idempotent."""
    organization = Organization.objects.get(pk=organization_id)
    since = date.fromisoformat(since_iso) if since_iso else None
    return services.rollup_rebuild(organization=organization, since=since)
