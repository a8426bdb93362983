"""Raising alerts: stored detections against the watchlists, once per passage; and acknowledging them.

`match_reads` is called by the Celery task `detections.match_reads` with a
batch of committed reads as alert intake describes them (detections/alert_intake.py
collects them off the ingest path), `match` with message ids (reading the
reads back). An alert is one row per (watchlist,
passage), so later reads of a passage already alerted on, a retried task or
two workers racing all end in the same single alert: the database's unique
constraint decides, and only rows actually inserted are fanned out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, NamedTuple
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone

from devices.storable import without_nul

from . import notify, watchlists
from devices.models import Device

from .alert_models import Alert
from .models import Detection
from .plates import normalize

ALERT_COLUMNS = ["watchlist_id", "entry_id", "passage_id", "detection_id", "device_id", "plate", "matched", "priority",
                 "note", "captured_at", "raised_at", "ack_comment"]  # fmt: skip


@dataclass(slots=True)
class _Hit:
    rule: watchlists.Rule
    matched: str
    message_id: str
    passage_id: int | None
    device_id: str
    plate: str
    captured_at: datetime
    detection_id: int | None = None


class StoredRead(NamedTuple):
    """What matching needs of one committed read; travels to the Celery worker as a JSON list."""

    message_id: str
    device_id: str
    captured_at: str  # ISO 8601
    plate: str  # as sent
    plate_normalized: str
    candidates: list[str]  # normalised
    passage_id: int | None


def stored_read(m) -> list:
    """A `transport.store.Stored` detection as a `StoredRead` (as a list: what Celery's JSON keeps)."""
    return [m.envelope.id_text, m.device_id, m.envelope.timestamp.isoformat(), m.envelope.payload.plate,
            m.plate_normalized, m.candidates_normalized, m.passage_id]  # fmt: skip


def match_reads(reads: Iterable[list]) -> list[Alert]:
    """Alerts newly raised for these reads (none for reads whose passage already has one)."""
    index = watchlists.active_index()
    if not index.size:
        return []
    reads = [StoredRead(*r) for r in reads]
    sites = _sites({r.device_id for r in reads})
    hits = _best_hits(index, (
        (r.message_id, r.device_id, sites.get(r.device_id, ""), datetime.fromisoformat(r.captured_at), r.plate,
         r.plate_normalized, r.candidates, r.passage_id) for r in reads
    ))  # fmt: skip
    _attach_detection_ids(hits)
    return _raise(hits)


def match(message_ids: Iterable[UUID | str], captured_at: Iterable[datetime | str] | None = None) -> list[Alert]:
    """`match_reads` for reads known by their message ids (read back from the database; `captured_at`, their
    capture times when known, lets the lookup read only the partitions that hold them)."""
    index = watchlists.active_index()
    if not index.size:
        return []
    reads = Detection.objects.filter(message_id__in=list(message_ids))
    if captured_at is not None:
        reads = reads.filter(captured_at__in=list(captured_at))
    rows = reads.order_by("captured_at", "id").values_list(
        "message_id", "device_id", "device__site", "captured_at", "plate", "plate_normalized", "candidates", "passage_id"
    )
    hits = _best_hits(index, ((str(mid), *rest[:5], _candidate_plates(rest[5]), rest[6]) for mid, *rest in rows))
    _attach_detection_ids(hits)
    return _raise(hits)


def _raise(hits: list[_Hit]) -> list[Alert]:
    if not hits:
        return []
    with transaction.atomic():
        ids = _insert(hits)
        alerts = list(Alert.objects.filter(id__in=ids).select_related("watchlist"))
        notify.plan(alerts)
    return alerts


def _best_hits(index: watchlists.Index, reads) -> list[_Hit]:
    """One hit per (watchlist, passage): the highest-priority entry, first read wins ties."""
    best: dict[tuple, _Hit] = {}
    for message_id, device_id, site, captured_at, plate, plate_normalized, candidates, passage_id in reads:
        read = watchlists.Read(device_id, site, captured_at, plate_normalized, candidates)
        for rule, text in index.hits(read):
            key = (rule.watchlist_id, passage_id or f"read-{message_id}")
            held = best.get(key)
            if held is None or rule.priority > held.rule.priority or (
                    rule.priority == held.rule.priority and captured_at < held.captured_at):  # fmt: skip
                best[key] = _Hit(rule, text, message_id, passage_id, device_id, plate, captured_at)
    return list(best.values())


def _attach_detection_ids(hits: list[_Hit]) -> None:
    """The detection row of each hit (only hits: a few reads in a batch), bounded to their capture times."""
    if not hits:
        return
    found = dict(Detection.objects.filter(message_id__in=[h.message_id for h in hits],
                                          captured_at__in=[h.captured_at for h in hits])
                 .values_list("message_id", "id"))  # fmt: skip
    for h in hits:
        h.detection_id = found.get(UUID(h.message_id))


_site_cache: dict[str, tuple[float, str]] = {}
SITE_CACHE_S = 60.0


def _sites(device_ids: set[str]) -> dict[str, str]:
    """Each device's site (watchlist entries may be scoped to one), cached for a minute."""
    now = time.monotonic()
    missing = [d for d in device_ids if now - _site_cache.get(d, (float("-inf"), ""))[0] > SITE_CACHE_S]
    if missing:
        for device_id, site in Device.objects.filter(id__in=missing).values_list("id", "site"):
            _site_cache[device_id] = (now, site)
    return {d: _site_cache.get(d, (0.0, ""))[1] for d in device_ids}


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
