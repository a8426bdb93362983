"""One online/offline model for a device, whatever transports it uses.

A device is online when any of these holds:
  - it holds an open WebSocket/Socket.IO connection (devices.presence, seen by every process);
  - its MQTT status topic says `online` (the camera's last will sets `offline`);
  - it sent a message within DEVICE_OFFLINE_AFTER_S, and no disconnect was seen
    since: neither a later MQTT `offline` nor, for a message that came over a
    socket, that socket's closing.
So a camera whose MQTT client dies is offline on the next watch pass after its
last will (about a second), not after the timeout; a REST-only camera after
the timeout. `evaluate` runs in the watch loop; each change is stored
(PresenceChange), broadcast, and an offline device raises an alert event. A
device coming back gets its waiting commands and, on drift, its configuration.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import channels, commands, configuration
from .models import Command, Device, PresenceChange

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Presence:
    online: bool
    transport: str
    reason: str


def presence_of(device: Device, live: list[str], now: datetime) -> Presence:
    """The device's presence from its sockets (`live`: transports with an open connection) and stored signals."""
    if live:
        return Presence(True, live[0], f"{live[0]} connection open")
    if device.mqtt_status == "online":
        return Presence(True, "mqtt", "MQTT status online")
    seen, via = device.last_seen_at, device.last_transport
    recent = seen is not None and now - seen < timedelta(seconds=settings.DEVICE_OFFLINE_AFTER_S)
    left_mqtt = device.mqtt_status == "offline" and (seen is None or (device.mqtt_status_at or seen) >= seen)
    if recent and via not in channels.LIVE_TRANSPORTS and not left_mqtt:
        return Presence(True, via, f"message over {via} at {seen.isoformat()}")
    if left_mqtt:
        return Presence(False, "mqtt", "MQTT status offline (last will or disconnect)")
    if via in channels.LIVE_TRANSPORTS and recent:
        return Presence(False, via, f"{via} connection closed")
    return Presence(False, via, f"nothing heard for {settings.DEVICE_OFFLINE_AFTER_S:g} s")


def evaluate(now: datetime | None = None) -> list[PresenceChange]:
    """Compare every active device's presence with the stored one; store, broadcast and act on each change.

    Changes are written in bulk, so a whole fleet reconnecting after a restart is a few queries, not a few per device.
    """
    now = now or timezone.now()
    changed: list[tuple[Device, Presence]] = []
    devices = list(Device.objects.filter(active=True).only(
        "id", "online", "last_seen_at", "last_transport", "mqtt_status", "mqtt_status_at"
    ))  # fmt: skip
    live = channels.live_transports_of([d.id for d in devices])
    for device in devices:
        presence = presence_of(device, live[device.id], now)
        if presence.online != device.online:
            changed.append((device, presence))
    if not changed:
        return []
    changes = _record(changed, now)
    _catch_up([d.id for d, p in changed if p.online])
    return changes


def _record(changed: list[tuple[Device, Presence]], now: datetime) -> list[PresenceChange]:
    with transaction.atomic():
        for state in (True, False):
            ids = [d.id for d, p in changed if p.online is state]
            Device.objects.filter(id__in=ids).update(online=state, presence_changed_at=now)
        changes = PresenceChange.objects.bulk_create(
            PresenceChange(device=d, online=p.online, at=now, transport=p.transport or "", reason=p.reason[:200])
            for d, p in changed
        )
        for device, p in changed:
            channels.announce("device_status", device.id, p.online, p.transport or "", p.reason)
            if not p.online:
                channels.announce("alert", device.id, kind="device_offline", reason=p.reason, at=now.isoformat())
    log.info("%d device(s) online, %d offline", sum(p.online for _, p in changed), sum(not p.online for _, p in changed))
    return changes


def _catch_up(device_ids: list[str]) -> None:
    """Devices back online: send what waits for them (only those with open commands or drift cost more queries)."""
    if not device_ids:
        return
    devices = list(Device.objects.filter(id__in=device_ids))
    waiting = set(
        Command.objects.filter(device__in=devices, state__in=commands.OPEN, expires_at__gt=timezone.now())
        .values_list("device_id", flat=True).distinct()
    )  # fmt: skip
    drifted = {i for i, d in configuration.drift_for(devices).items() if d.differs}
    for device_id in sorted(waiting | drifted):
        device_connected(device_id)


def device_connected(device_id: str) -> int:
    """A camera connected (any transport): its waiting commands, and its configuration on drift, go out now.

    The watch loop calls it on each offline → online change; a transport may call it too on connect (from
    synchronous code, never on its event loop: pushes wait for the broker or the channel layer). Returns
    how many commands went out.
    """
    device = Device.objects.filter(pk=device_id).first()
    if device is None:
        return 0
    sent = commands.deliver_pending(device)
    if configuration.drift(device).differs:
        configuration.push(device)
    return sent


def history(device: Device, limit: int = 50) -> list[PresenceChange]:
    return list(PresenceChange.objects.filter(device=device)[:limit])
