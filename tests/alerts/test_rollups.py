"""Rollups against counts computed directly from a seeded week of detections, ledger messages and refusals."""

from __future__ import annotations

import random
import statistics
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from django.utils import timezone as dj_timezone

from detections import rollups
from detections.alert_models import Rollup
from detections.models import Detection
from transport.models import Message, RejectedMessage

pytestmark = pytest.mark.django_db

WEEK_START = datetime(2026, 11, 2, tzinfo=timezone.utc)
PLATES = [f"WK{n:04d}" for n in range(60)]
VIAS = ["rest", "websocket", "mqtt", "socketio"]


def seed_week(devices, rng: random.Random, n: int = 3000) -> None:
    detections, messages = [], []
    for _ in range(n):
        captured = WEEK_START + timedelta(seconds=rng.uniform(0, 7 * 86400))
        device, via = rng.choice(devices), rng.choice(VIAS)
        add_detection(detections, messages, device, via, captured, rng.choice(PLATES), rng.uniform(5, 900))
    for _ in range(400):  # health and other messages count as accepted too
        sent = WEEK_START + timedelta(seconds=rng.uniform(0, 7 * 86400))
        messages.append(Message(message_id=uuid.uuid4(), device=rng.choice(devices), data_type="health",
                                received_via=rng.choice(VIAS), protocol="rest", sent_at=sent, received_at=sent))  # fmt: skip
    Detection.objects.bulk_create(detections)
    Message.objects.bulk_create(messages)
    for _ in range(150):
        device = rng.choice(devices + [None])
        r = RejectedMessage.objects.create(device=device, transport=rng.choice(VIAS), error="invalid")
        at = WEEK_START + timedelta(seconds=rng.uniform(0, 7 * 86400))
        RejectedMessage.objects.filter(id=r.id).update(received_at=at)


def add_detection(detections, messages, device, via, captured, plate, latency, received=None) -> None:
    mid = uuid.uuid4()
    received = received or captured + timedelta(milliseconds=latency)
    detections.append(Detection(message_id=mid, device=device, plate=plate, plate_normalized=plate, confidence=0.9,
                                captured_at=captured, received_at=received, received_via=via, protocol=via,
                                latency_ms=latency))  # fmt: skip
    messages.append(Message(message_id=mid, device=device, data_type="detection", received_via=via, protocol=via,
                            sent_at=captured, received_at=received, latency_ms=latency))  # fmt: skip


def direct_counts(period: str) -> dict[tuple, dict]:
    """What each rollup row must say, computed from the raw rows without the rollups module."""
    trunc = (lambda t: t.replace(minute=0, second=0, microsecond=0)) if period == "hour" else (
        lambda t: t.replace(hour=0, minute=0, second=0, microsecond=0))  # fmt: skip
    out: dict[tuple, dict] = defaultdict(lambda: {"detections": 0, "plates": set(), "lat": [], "accepted": 0,
                                                  "rejected": 0})  # fmt: skip
    for device_id, via, plate, latency, at in Detection.objects.values_list(
        "device_id", "received_via", "plate_normalized", "latency_ms", "captured_at"
    ):
        row = out[(trunc(at.astimezone(timezone.utc)), device_id, via)]
        row["detections"] += 1
        row["plates"].add(plate)
        row["lat"].append(latency)
    for device_id, via, at in Message.objects.values_list("device_id", "received_via", "sent_at"):
        out[(trunc(at.astimezone(timezone.utc)), device_id, via)]["accepted"] += 1
    for device_id, via, at in RejectedMessage.objects.values_list("device_id", "transport", "received_at"):
        out[(trunc(at.astimezone(timezone.utc)), device_id or "", via)]["rejected"] += 1
    return {key: _expected(row) for key, row in out.items()}


def _expected(row: dict) -> dict:
    lat = row["lat"]
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
    return {"detections": row["detections"], "unique_plates": len(row["plates"]), "accepted": row["accepted"],
            "rejected": row["rejected"], "p50": round(q[49], 6) if lat else None, "p95": round(q[94], 6) if lat else None}  # fmt: skip


def rollup_rows(period: str) -> dict[tuple, dict]:
    return {
        (r.start, r.device_id, r.protocol): {
            "detections": r.detections, "unique_plates": r.unique_plates, "accepted": r.accepted,
            "rejected": r.rejected, "p50": _r(r.latency_p50_ms), "p95": _r(r.latency_p95_ms),
        }
        for r in Rollup.objects.filter(period=period)
    }  # fmt: skip


def _r(value):
    return None if value is None else round(value, 6)


def test_rollups_of_a_seeded_week_equal_direct_counts_and_rerunning_changes_nothing(make_device):
    devices = [make_device() for _ in range(3)]
    seed_week(devices, random.Random(7))
    rollups.rollup_recent()
    for period in ("hour", "day"):
        assert rollup_rows(period) == direct_counts(period), period
    assert len(rollup_rows("day")) > 7 and len(rollup_rows("hour")) > 7 * 24

    before = list(Rollup.objects.order_by("id").values_list("id", "period", "start", "device_id", "protocol",
                                                            *rollups.STAT_FIELDS))  # fmt: skip
    for start in sorted({s for s, *_ in rollup_rows("hour")})[:30]:
        rollups.rollup("hour", start)
    for start in {s for s, *_ in rollup_rows("day")}:
        rollups.rollup("day", start)
    rollups.rollup_recent()
    after = list(Rollup.objects.order_by("id").values_list("id", "period", "start", "device_id", "protocol",
                                                           *rollups.STAT_FIELDS))  # fmt: skip
    assert after == before


def test_late_data_is_folded_into_its_old_hour_and_day(make_device):
    device = make_device()
    seed_week([device], random.Random(3), n=300)
    rollups.rollup_recent()
    late_at = WEEK_START + timedelta(days=2, hours=5, minutes=17)
    detections, messages = [], []
    add_detection(detections, messages, device, "mqtt", late_at, "LATE001", 12.5, received=dj_timezone.now())
    Detection.objects.bulk_create(detections)
    Message.objects.bulk_create(messages)

    hours_before = rollup_rows("hour")
    rollups.rollup_recent()
    hour = late_at.replace(minute=0)
    key = (hour, device.id, "mqtt")
    assert rollup_rows("hour")[key]["detections"] == hours_before.get(key, {"detections": 0})["detections"] + 1
    assert rollup_rows("hour") == direct_counts("hour") and rollup_rows("day") == direct_counts("day")



def test_todays_row_is_refreshed_at_most_hourly_and_completed_after_midnight(make_device):
    device = make_device()
    now = dj_timezone.now()
    captured = now - timedelta(seconds=1)
    hour, day = rollups.period_start("hour", captured), rollups.period_start("day", captured)
    for plate in ("DAY0001", "DAY0002"):
        detections, messages = [], []
        add_detection(detections, messages, device, "rest", captured, plate, 10.0, received=dj_timezone.now())
        Detection.objects.bulk_create(detections)
        Message.objects.bulk_create(messages)
        rollups.rollup_recent(now=now)
    assert Rollup.objects.get(period="hour", start=hour).detections == 2  # the hour is current at once
    assert Rollup.objects.get(period="day", start=day).detections == 1  # today waits for its hourly refresh
    rollups.rollup_recent(now=day + timedelta(days=1, minutes=5))  # after midnight: yesterday completed
    assert rollup_rows("day") == direct_counts("day") and rollup_rows("hour") == direct_counts("hour")
