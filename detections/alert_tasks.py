"""Celery tasks of watchlist alerts and rollups. Each takes ids and works on a batch."""

from __future__ import annotations

import logging
import time

import requests
from celery import shared_task
from django.conf import settings

from lpr_server.celery import FAST_JSON

from . import alerts, notify, rollups
from .alert_models import Delivery

log = logging.getLogger(__name__)


@shared_task(name="detections.match_alerts", ignore_result=True, acks_late=True)
def match_alerts(message_ids: list[str], captured_at: list[str] | None = None) -> int:
    """Match a batch of stored detections (by message id, and their capture times when known) against the
    watchlists; fan out new alerts. Intake now queues `match_reads`; this stays for tasks an older version queued."""
    return len(alerts.match(message_ids, captured_at))


@shared_task(name="detections.match_reads", ignore_result=True, acks_late=True, serializer=FAST_JSON)
def match_reads(reads: list[list]) -> int:
    """Match a batch of stored reads, as alert intake describes them (`alerts.StoredRead`), against the
    watchlists; fan out new alerts."""
    return len(alerts.match_reads(reads))


@shared_task(name="detections.notify_dashboard", bind=True, ignore_result=True, max_retries=5)
def notify_dashboard(self, delivery_ids: list[int]) -> None:
    try:
        notify.send_dashboard(delivery_ids)
    except Exception as exc:
        raise self.retry(exc=exc, countdown=notify.backoff_s(self.request.retries + 1))


@shared_task(name="detections.deliver_webhook", bind=True, ignore_result=True, max_retries=None)
def deliver_webhook(self, delivery_id: int) -> None:
    d = Delivery.objects.select_related("webhook", "alert__watchlist").filter(id=delivery_id, state="pending").first()
    if d is None:
        return  # delivered already (a redelivered task) or given up
    if not d.webhook.active:
        notify.attempt_failed(delivery_id, "webhook disabled", final=True)
        return
    try:
        notify.send_webhook(d)
    except requests.RequestException as exc:
        _retry_or_give_up(self, delivery_id, f"{type(exc).__name__}: {exc}")
        return
    notify.delivered(delivery_id)


@shared_task(name="detections.deliver_email", bind=True, ignore_result=True, max_retries=None)
def deliver_email(self, delivery_id: int) -> None:
    d = Delivery.objects.select_related("alert__watchlist").filter(id=delivery_id, state="pending").first()
    if d is None:
        return
    try:
        notify.send_email(d)
    except Exception as exc:  # SMTP errors are many kinds of exception
        _retry_or_give_up(self, delivery_id, f"{type(exc).__name__}: {exc}")
        return
    notify.delivered(delivery_id)


def _retry_or_give_up(task, delivery_id: int, error: str) -> None:
    attempt = task.request.retries + 1
    final = attempt >= settings.ALERT_WEBHOOK_MAX_ATTEMPTS
    notify.attempt_failed(delivery_id, error, final)
    log.info("delivery %s attempt %d failed (%s)%s", delivery_id, attempt, error, "; giving up" if final else "")
    if not final:
        if task.request.is_eager:  # eager retries run at once; wait here (a pool thread, see notify._send)
            time.sleep(notify.backoff_s(attempt))
        raise task.retry(countdown=notify.backoff_s(attempt))


@shared_task(name="detections.rollup_recent", ignore_result=True)
def rollup_recent() -> int:
    """CELERY_BEAT_SCHEDULE: recompute every hour and day that received data lately (late data included)."""
    return rollups.rollup_recent()
