"""The devices watch loop: one pass does everything that must happen without a request to trigger it.

Presence (online/offline), command delivery to devices that came back,
re-sends and expiry, protocol switches seen in the ledger or reported in
health payloads, and recommendations refreshed from new measurements. Run by
`manage.py run_device_watch` (every DEVICE_WATCH_INTERVAL_S); each pass is
idempotent, so two watchers, or a restart, do no harm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from . import commands, connectivity, online
from .models import Device, HealthLog

# Rows are stamped with their batch's start, and committed a little later: look back this far each pass.
LOOKBACK_S = 5.0


@dataclass
class Cursor:
    since: datetime = field(default_factory=lambda: timezone.now() - timedelta(seconds=60))


def tick(cursor: Cursor, now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    since = cursor.since - timedelta(seconds=LOOKBACK_S)
    changes = online.evaluate(now)
    sweep = commands.sweep(now)
    measured = _devices_with_new_measurements(since, now)  # first: a switch the camera explains lends its reason
    switches = connectivity.observe_transports(since, now)
    recommended = connectivity.refresh(measured, now)
    cursor.since = now
    return {"presence": len(changes), **sweep, "switches": len(switches), "recommendations": len(recommended)}


def _devices_with_new_measurements(since: datetime, until: datetime) -> set[str]:
    """Devices with a health report or a server ping since the last pass; reported switches are stored on the way."""
    ids = set(
        Device.objects.filter(measured_latency_at__gt=since, measured_latency_at__lte=until).values_list("id", flat=True)
    )
    for device_id, extra in HealthLog.objects.filter(received_at__gt=since, received_at__lte=until).filter(
        ~Q(latency_ms=None) | ~Q(bandwidth_kbps=None) | ~Q(packet_loss=None) | ~Q(uptime_percent=None)
        | Q(extra__has_key="protocol_switches")
    ).values_list("device_id", "extra"):
        ids.add(device_id)
        if isinstance(extra, dict) and extra.get("protocol_switches"):
            connectivity.record_reported_switches(device_id, extra["protocol_switches"])
    return ids
