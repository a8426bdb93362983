"""Celery tasks of the detections app."""

from __future__ import annotations

import logging

from celery import shared_task

from . import partitions, retention
from .alert_tasks import match_alerts  # noqa: F401  (registers the alert and rollup tasks with the worker)

log = logging.getLogger(__name__)


@shared_task(name="detections.purge_expired", ignore_result=True)
def purge_expired() -> None:
    """Daily (CELERY_BEAT_SCHEDULE): delete what is past its retention age, batch by batch."""
    purged = retention.purge_expired()
    log.info("retention purged %s", purged)


@shared_task(name="detections.ensure_partitions", ignore_result=True)
def ensure_partitions() -> None:
    """Hourly (CELERY_BEAT_SCHEDULE): detection partitions exist for the days ahead (PostgreSQL only)."""
    created = partitions.ensure()
    if created:
        log.info("created detection partitions %s", ", ".join(created))
