"""A camera's MQTT presence: the retained `status` topic it sets `online`, and its last will sets `offline`.

`Device.mqtt_status_at` is when the status last changed; a repeat of the
same status (the broker replays the retained value to every new
subscriber) changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from .models import Device

STATUSES = ("online", "offline")


class StatusError(ValueError):
    pass


def parse_status(raw: bytes | str) -> str:
    """`online` or `offline` from a status message body (plain text, or a JSON string)."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    value = text.strip().strip('"').strip().lower()
    if value not in STATUSES:
        raise StatusError(f"status must be 'online' or 'offline', not {text[:40]!r}")
    return value


@transaction.atomic
def record_statuses(statuses: dict[str, str], at: datetime | None = None) -> list[str]:
    """Set each device's MQTT status (device id → status) where it changed; returns the ids that changed."""
    at = at or timezone.now()
    changed: list[str] = []
    for status in STATUSES:
        ids = [device_id for device_id, s in statuses.items() if s == status]
        if ids:
            moving = list(Device.objects.filter(id__in=ids).exclude(mqtt_status=status).values_list("id", flat=True))
            Device.objects.filter(id__in=moving).update(mqtt_status=status, mqtt_status_at=at)
            changed += moving
    return changed
