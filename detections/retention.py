"""Retention: what is older than its configured age is deleted.

On PostgreSQL detections go a whole partition at a time (detections/partitions.py);
what is left (reads in the legacy or default partition, and everything on
SQLite) and every other table is deleted in small batches, each its own
short transaction (ids picked by an indexed range, then deleted by primary
key), so ingest never waits behind a long delete. Ages (days, 0 = keep
forever): RETENTION_DETECTIONS_DAYS (by capture time), RETENTION_IMAGES_DAYS
(by upload time; detections keep their row, their image link is cleared),
RETENTION_HEALTH_DAYS (by report time), RETENTION_MESSAGES_DAYS (the message
ledger, by arrival: a camera resending a message older than this would have
it stored again) and RETENTION_REJECTED_DAYS (refused input).
Passages go when their last read is past the detection age; alerts stay,
their link to a deleted read cleared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from devices.models import HealthLog
from transport.models import Message, RejectedMessage

from . import partitions
from .alert_models import Alert
from .models import Detection, Image, Passage

BATCH = 5000


@dataclass(slots=True)
class Purged:
    detections: int = 0
    partitions: list[str] = field(default_factory=list)
    passages: int = 0
    images: int = 0
    health_logs: int = 0
    messages: int = 0
    rejected: int = 0


def cutoff(days: int, now: datetime | None = None) -> datetime | None:
    return (now or timezone.now()) - timedelta(days=days) if days and days > 0 else None


def purge_expired(now: datetime | None = None, batch: int = BATCH) -> Purged:
    now = now or timezone.now()
    out = Purged()
    if at := cutoff(settings.RETENTION_DETECTIONS_DAYS, now):
        out.partitions = partitions.drop_before(at)
        out.detections = _delete_detections_before(at, batch)
        out.passages = _delete_before(Passage, "last_at", at, batch)
    if at := cutoff(settings.RETENTION_IMAGES_DAYS, now):
        out.images = _delete_images_before(at, batch)
    if at := cutoff(settings.RETENTION_HEALTH_DAYS, now):
        out.health_logs = _delete_before(HealthLog, "reported_at", at, batch)
    if at := cutoff(settings.RETENTION_MESSAGES_DAYS, now):
        out.messages = _delete_before(Message, "received_at", at, batch)
    if at := cutoff(settings.RETENTION_REJECTED_DAYS, now):
        out.rejected = _delete_before(RejectedMessage, "received_at", at, batch)
    return out


def _delete_detections_before(at: datetime, batch: int) -> int:
    total = 0
    while True:
        with transaction.atomic():
            expired = Detection.objects.filter(captured_at__lt=at)
            ids = list(expired.order_by().values_list("pk", flat=True)[:batch])
            if ids:
                Alert.objects.filter(detection_id__in=ids).update(detection=None)
                expired.filter(pk__in=ids).delete()
        total += len(ids)
        if len(ids) < batch:
            return total


def _delete_before(model: type[models.Model], field: str, at: datetime, batch: int) -> int:
    total = 0
    while True:
        with transaction.atomic():
            ids = list(model.objects.filter(**{f"{field}__lt": at}).order_by().values_list("pk", flat=True)[:batch])
            if ids:
                model.objects.filter(pk__in=ids).delete()
        total += len(ids)
        if len(ids) < batch:
            return total


def _delete_images_before(at: datetime, batch: int) -> int:
    total = 0
    while True:
        with transaction.atomic():
            images = list(Image.objects.filter(uploaded_at__lt=at).order_by()[:batch])
            if images:
                Image.objects.filter(pk__in=[i.pk for i in images]).delete()  # detections' image links are cleared
                files = [f for i in images for f in (i.file, i.thumbnail) if f]
                transaction.on_commit(lambda files=files: _remove_files(files))
        total += len(images)
        if len(images) < batch:
            return total


def _remove_files(files: list) -> None:
    for f in files:
        f.storage.delete(f.name)
