"""Seeding detections for the detections tests, through the real pipeline."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.factories import envelope
from transport import pipeline

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=timezone.utc)


def ingest(device, plate: str, at: datetime | timedelta = timedelta(0), **payload) -> str:
    """Store one read; `at` is a time or an offset from T0. Returns its message_id."""
    when = T0 + at if isinstance(at, timedelta) else at
    env = envelope(device.id, payload={"plate": plate, "confidence": payload.pop("confidence", 0.9), **payload},
                   timestamp=when.isoformat())  # fmt: skip
    ack = pipeline.ingest(env, device, "rest")
    assert ack.status == "accepted", ack
    return env["message_id"]
