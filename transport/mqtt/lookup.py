"""Devices by id for the bridge: one query per batch for the ids it has not seen lately.

Entries, found or not, live `ttl_s` seconds: a device deactivated (or
created) in the admin is seen by the bridge within that time, and a flood
of messages for an unknown id costs one query per `ttl_s`, not one each.
"""

from __future__ import annotations

import time
from typing import Iterable

from devices.models import Device

DEFAULT_TTL_S = 5.0


class DeviceCache:
    def __init__(self, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Device | None]] = {}

    def get_many(self, ids: Iterable[str]) -> dict[str, Device | None]:
        """Device (or None when unknown) per id. Raises the database's error when it is down."""
        now = time.monotonic()
        found: dict[str, Device | None] = {}
        stale = []
        for device_id in set(ids):
            entry = self._entries.get(device_id)
            if entry and now - entry[0] < self.ttl_s:
                found[device_id] = entry[1]
            else:
                stale.append(device_id)
        if stale:
            fetched = {d.id: d for d in Device.objects.filter(id__in=stale)}
            for device_id in stale:
                device = fetched.get(device_id)
                self._entries[device_id] = (now, device)
                found[device_id] = device
        if len(self._entries) > 100_000:
            self._entries = {k: v for k, v in self._entries.items() if now - v[0] < self.ttl_s}
        return found
