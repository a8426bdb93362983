"""Per-device rate limits: a token bucket per device, in this process.

Each server process keeps its own buckets, so with N processes behind a
balancer a device may reach N times its rate; cameras stick to one
connection, so in practice a device meets one bucket. Kept in memory on
purpose: a shared counter would put a Redis round trip on every message.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings


@dataclass(slots=True)
class Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    def take(self, device_id: str, count: int, rate: float | None = None) -> float:
        """Spend `count` tokens; return 0.0 if allowed, else the seconds to wait before retrying."""
        rate = rate or settings.DEVICE_RATE_PER_S
        with self._lock:
            bucket = self._refilled(device_id, rate)
            if bucket.tokens >= count:
                bucket.tokens -= count
                return 0.0
            return (count - bucket.tokens) / rate

    def take_some(self, device_id: str, count: int, rate: float | None = None) -> tuple[int, float]:
        """Spend up to `count` tokens: how many were granted, and the seconds before the rest would be."""
        rate = rate or settings.DEVICE_RATE_PER_S
        with self._lock:
            bucket = self._refilled(device_id, rate)
            granted = min(count, int(bucket.tokens))
            bucket.tokens -= granted
        return granted, (count - granted) / rate

    def _refilled(self, device_id: str, rate: float) -> Bucket:
        burst = max(float(settings.DEVICE_RATE_BURST), rate)
        now = time.monotonic()
        bucket = self._buckets.get(device_id)
        if bucket is None:
            bucket = self._buckets[device_id] = Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        return bucket

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


limiter = RateLimiter()
