"""Analytics rollups: per device and protocol, per hour and per day.

A row counts, for one (period, start, device, protocol):
- detections and unique plates, bucketed by capture time (`captured_at`),
  with the latency p50/p95 of those detections (percentile_cont, interpolated);
- accepted messages of any data type, from the ledger (transport.Message),
  bucketed by the camera's timestamp (`sent_at`, the same instant as a
  detection's `captured_at`);
- rejected messages (transport.RejectedMessage), by when they were refused.
"protocol" is the transport the data arrived over (`received_via`).

`rollup(period, start)` recomputes one period from the raw rows and upserts
it, deleting keys that no longer have data: re-running gives the same rows.
`rollup_recent` (Celery beat) finds the periods that received data since the
last run, through the ledger's `received_at` index, so data that arrives
late for an old hour is folded into that hour and its day.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.db import connection, transaction
from django.db.models import Count, Max
from django.db.models.functions import TruncHour

from transport.models import Message, RejectedMessage

from .alert_models import Rollup
from .models import Detection

PERIODS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
WATERMARK_SLACK = timedelta(minutes=2)
DAY_REFRESH = timedelta(hours=1)  # transactions committed late with an earlier received_at
KEY_FIELDS = ["period", "start", "device_id", "protocol"]
STAT_FIELDS = ["detections", "unique_plates", "accepted", "rejected", "latency_p50_ms", "latency_p95_ms"]


def period_start(period: str, at: datetime) -> datetime:
    at = at.astimezone(dt_timezone.utc)
    at = at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if period == "day" else at


def rollup(period: str, start: datetime) -> int:
    """Recompute one period; returns the number of rows it now has."""
    start = period_start(period, start)
    end = start + PERIODS[period]
    stats: dict[tuple[str, str], dict] = {}
    for device_id, protocol, n, unique, p50, p95 in _detection_stats(start, end):
        stats[(device_id, protocol)] = {"detections": n, "unique_plates": unique, "latency_p50_ms": p50,
                                        "latency_p95_ms": p95}  # fmt: skip
    accepted = Message.objects.filter(sent_at__gte=start, sent_at__lt=end).values("device_id", "received_via")
    for device_id, via, n in accepted.annotate(n=Count("*")).values_list("device_id", "received_via", "n"):
        stats.setdefault((device_id, via), {})["accepted"] = n
    rejected = RejectedMessage.objects.filter(received_at__gte=start, received_at__lt=end)
    rejected = rejected.values("device_id", "transport")
    for device_id, transport, n in rejected.annotate(n=Count("*")).values_list("device_id", "transport", "n"):
        row = stats.setdefault((device_id or "", transport), {})
        row["rejected"] = row.get("rejected", 0) + n  # a deleted device's refusals join the unnamed ones
    rows = [Rollup(period=period, start=start, device_id=d, protocol=p, **{f: s.get(f, _zero(f)) for f in STAT_FIELDS})
            for (d, p), s in stats.items()]  # fmt: skip
    with transaction.atomic():
        stale = Rollup.objects.filter(period=period, start=start)
        for device_id, protocol in stats:
            stale = stale.exclude(device_id=device_id, protocol=protocol)
        stale.delete()
        Rollup.objects.bulk_create(rows, update_conflicts=True, unique_fields=KEY_FIELDS,
                                   update_fields=[*STAT_FIELDS, "computed_at"])
    return len(rows)


def _zero(field: str):
    return None if field.startswith("latency") else 0


def _detection_stats(start: datetime, end: datetime) -> list[tuple]:
    if connection.vendor == "postgresql":
        sql = (
            "SELECT device_id, received_via, count(*), count(DISTINCT plate_normalized), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) "
            f"FROM {Detection._meta.db_table} WHERE captured_at >= %s AND captured_at < %s GROUP BY 1, 2"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [start, end])
            return cursor.fetchall()
    groups: dict[tuple[str, str], tuple[list, set, list]] = {}
    rows = Detection.objects.filter(captured_at__gte=start, captured_at__lt=end)
    columns = ("device_id", "received_via", "plate_normalized", "latency_ms")
    for device_id, via, plate, latency in rows.values_list(*columns):
        latencies, plates, count = groups.setdefault((device_id, via), ([], set(), [0]))
        plates.add(plate)
        count[0] += 1
        if latency is not None:
            latencies.append(latency)
    return [(d, v, n[0], len(plates), percentile(lat, 0.5), percentile(lat, 0.95))
            for (d, v), (lat, plates, n) in groups.items()]  # fmt: skip


def percentile(values: list[float], q: float) -> float | None:
    """percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def touched_hours(since: datetime) -> set[datetime]:
    """Hours that received data (of any capture time) at or after `since`."""
    hours = set(Message.objects.filter(received_at__gte=since).annotate(h=TruncHour("sent_at"))
                .values_list("h", flat=True).distinct())  # fmt: skip
    hours |= set(RejectedMessage.objects.filter(received_at__gte=since).annotate(h=TruncHour("received_at"))
                 .values_list("h", flat=True).distinct())  # fmt: skip
    return {period_start("hour", h) for h in hours}


def rollup_recent(now: datetime | None = None) -> int:
    """Recompute every hour and day that received data since the last run (all data on the first).

    Today's row is recomputed at most every DAY_REFRESH (a day is every row of the day, read again);
    yesterday's once more after midnight, so its last hours are in.
    """
    now = now or datetime.now(dt_timezone.utc)
    last = Rollup.objects.aggregate(at=Max("computed_at"))["at"]
    since = (last - WATERMARK_SLACK) if last else datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
    hours = touched_hours(since)
    today = period_start("day", now)
    days = {period_start("day", h) for h in hours}
    if today in days and (_computed_at(today) or now - DAY_REFRESH) > now - DAY_REFRESH:
        days.discard(today)
    yesterday = today - PERIODS["day"]
    if (_computed_at(yesterday) or today) <= today + WATERMARK_SLACK and (yesterday in days or _has_rows(yesterday)):
        days.add(yesterday)
    for h in sorted(hours):
        rollup("hour", h)
    for d in sorted(days):
        rollup("day", d)
    return len(hours) + len(days)


def _computed_at(day: datetime) -> datetime | None:
    return Rollup.objects.filter(period="day", start=day).aggregate(at=Max("computed_at"))["at"]


def _has_rows(day: datetime) -> bool:
    return Rollup.objects.filter(period="hour", start__gte=day, start__lt=day + PERIODS["day"]).exists()
