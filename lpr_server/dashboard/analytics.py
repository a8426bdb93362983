"""The analytics page, from the hourly and daily rollups (detections/rollups.py) only: never raw detections.

Per hour (the last HOURS) and per day (the last DAYS): detections, unique plates,
accepted and rejected messages, by camera, by site and by protocol, with the
detections' p95 latency per protocol. "Unique plates" added over cameras or
hours counts a plate once per camera and period, as the rollups store it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Max, Sum
from django.utils import timezone

from detections.alert_models import Rollup
from detections.rollups import period_start
from devices.models import Device

HOURS = 48
DAYS = 30


@dataclass
class Analytics:
    hourly: dict           # {"labels": [...], "detections": [...], "unique_plates": [...]}
    daily: dict
    by_camera: list[dict]  # over DAYS, busiest first
    by_site: list[dict]
    protocols: list[dict]  # over DAYS: accepted, rejected, share, success rate, p95 latency (the worst day's)
    computed_at: datetime | None


def analytics(now: datetime | None = None) -> Analytics:
    now = now or timezone.now()
    days_since = period_start("day", now) - timedelta(days=DAYS - 1)
    daily_rows = Rollup.objects.filter(period="day", start__gte=days_since)
    return Analytics(
        hourly=_series(Rollup.objects.filter(period="hour", start__gte=period_start("hour", now) - timedelta(hours=HOURS - 1)),
                       period_start("hour", now), timedelta(hours=1), HOURS),
        daily=_series(daily_rows, period_start("day", now), timedelta(days=1), DAYS),
        by_camera=_by_camera(daily_rows), by_site=_by_site(daily_rows), protocols=_protocols(daily_rows),
        computed_at=daily_rows.order_by("-computed_at").values_list("computed_at", flat=True).first(),
    )  # fmt: skip


def _series(rows, last: datetime, step: timedelta, n: int) -> dict:
    starts = [last - step * i for i in reversed(range(n))]
    got = {r["start"]: r for r in rows.values("start").annotate(d=Sum("detections"), u=Sum("unique_plates"))}
    fmt = "%H:%M" if step < timedelta(days=1) else "%d %b"
    return {
        "labels": [s.strftime(fmt) for s in starts],
        "detections": [got[s]["d"] if s in got else 0 for s in starts],
        "unique_plates": [got[s]["u"] if s in got else 0 for s in starts],
    }


def _by_camera(rows) -> list[dict]:
    totals = rows.exclude(device_id="").values("device_id").annotate(
        detections=Sum("detections"), unique_plates=Sum("unique_plates"), accepted=Sum("accepted"), rejected=Sum("rejected")
    )
    names = dict(Device.objects.values_list("id", "name"))
    out = [{**t, "name": names.get(t["device_id"], "")} for t in totals]
    return sorted(out, key=lambda t: (-t["detections"], t["device_id"]))


def _by_site(rows) -> list[dict]:
    sites = dict(Device.objects.values_list("id", "site"))
    out: dict[str, dict] = defaultdict(lambda: {"detections": 0, "unique_plates": 0, "cameras": set()})
    for t in _by_camera(rows):
        site = out[sites.get(t["device_id"]) or "(no site)"]
        site["detections"] += t["detections"]
        site["unique_plates"] += t["unique_plates"]
        site["cameras"].add(t["device_id"])
    return sorted(({"site": s, "detections": v["detections"], "unique_plates": v["unique_plates"],
                    "cameras": len(v["cameras"])} for s, v in out.items()), key=lambda r: -r["detections"])  # fmt: skip


def _protocols(rows) -> list[dict]:
    per = list(rows.values("protocol").annotate(accepted=Sum("accepted"), rejected=Sum("rejected"),
                                                detections=Sum("detections"), p95_ms=Max("latency_p95_ms")))  # fmt: skip
    total = sum(p["accepted"] + p["rejected"] for p in per) or 1
    for p in per:
        messages = p["accepted"] + p["rejected"]
        p["share"] = round(messages / total, 4)
        p["success_rate"] = round(p["accepted"] / messages, 4) if messages else None
    return sorted(per, key=lambda p: -p["accepted"])
