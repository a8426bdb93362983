"""Raising alerts: stored detections against the watchlists, once per passage; and acknowledging them.

`match` is called by the Celery task `detections.match_alerts` with the
message ids of a batch of committed detections (detections/alert_intake.py
collects them off the ingest path). An alert is one row per (watchlist,
passage), so later reads of a passage already alerted on, a retried task or
two workers racing all end in the same single alert: the database's unique
constraint decides, and only rows actually inserted are fanned out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone

from devices.storable import without_nul

from . import notify, watchlists
from .alert_models import Alert
from .models import Detection
from .plates import normalize

ALERT_COLUMNS = ["watchlist_id", "entry_id", "passage_id", "detection_id", "device_id", "plate", "matched", "priority",
                 "note", "captured_at", "raised_at", "ack_comment"]  # fmt: skip


@dataclass(slots=True)
class _Hit:
    rule: watchlists.Rule
    matched: str
    detection_id: int
    passage_id: int | None
    device_id: str
    plate: str
    captured_at: datetime


def match(message_ids: Iterable[UUID | str]) -> list[Alert]:
    """Alerts newly raised for these detections (none for reads whose passage already has one)."""
    index = watchlists.active_index()
    if not index.size:
        return []
    hits = _best_hits(index, _reads(message_ids))
    if not hits:
        return []
    with transaction.atomic():
        ids = _insert(hits)
        alerts = list(Alert.objects.filter(id__in=ids).select_related("watchlist"))
        notify.plan(alerts)
    return alerts


def _reads(message_ids: Iterable[UUID | str]):
    return Detection.objects.filter(message_id__in=list(message_ids)).order_by("captured_at", "id").values_list(
        "id", "device_id", "device__site", "captured_at", "plate", "plate_normalized", "candidates", "passage_id"
    )


def _best_hits(index: watchlists.Index, rows) -> list[_Hit]:
    """One hit per (watchlist, passage): the highest-priority entry, first read wins ties."""
    best: dict[tuple, _Hit] = {}
    for det_id, device_id, site, captured_at, plate, plate_normalized, candidates, passage_id in rows:
        read = watchlists.Read(device_id, site, captured_at, plate_normalized, _candidate_plates(candidates))
        for rule, text in index.hits(read):
            key = (rule.watchlist_id, passage_id or f"read-{det_id}")
            held = best.get(key)
            if held is None or rule.priority > held.rule.priority:
                best[key] = _Hit(rule, text, det_id, passage_id, device_id, plate, captured_at)
    return list(best.values())


def _candidate_plates(candidates) -> list[str]:
    out = []
    for c in candidates or ():
        plate = c.get("plate") if isinstance(c, dict) else c
        if isinstance(plate, str) and plate:
            out.append(normalize(plate))
    return out


def _insert(hits: list[_Hit]) -> list[int]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING id: the ids of alerts that did not exist yet."""
    now = timezone.now()
    rows = [
        (h.rule.watchlist_id, h.rule.entry_id, h.passage_id, h.detection_id, h.device_id, h.plate[:32], h.matched[:32],
         h.rule.priority, h.rule.note, h.captured_at, now, "")
        for h in hits
    ]  # fmt: skip
    table = connection.ops.quote_name(Alert._meta.db_table)
    row_sql = "(" + ", ".join(["%s"] * len(ALERT_COLUMNS)) + ")"
    sql = (
        f"INSERT INTO {table} ({', '.join(ALERT_COLUMNS)}) VALUES {', '.join([row_sql] * len(rows))} "
        "ON CONFLICT DO NOTHING RETURNING id"
    )
    params = [_adapt(v) for row in rows for v in row]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _adapt(value):
    """psycopg takes datetimes as they are; SQLite wants Django's text form."""
    if isinstance(value, datetime) and connection.vendor != "postgresql":
        return connection.ops.adapt_datetimefield_value(value)
    return value


class AlreadyAcknowledged(Exception):
    pass


def acknowledge(alert_id: int, user, comment: str = "") -> Alert:
    """Record who acknowledged the alert and when; the first acknowledgement stands."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert_id)
        if alert.acknowledged_at is not None:
            raise AlreadyAcknowledged(alert)
        comment = without_nul(comment[:2000])  # free text from a form: a NUL could not be stored
        alert.acknowledged_at, alert.acknowledged_by, alert.ack_comment = timezone.now(), user, comment
        alert.save(update_fields=["acknowledged_at", "acknowledged_by", "ack_comment"])
    return alert
