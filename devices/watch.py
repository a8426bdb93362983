"""The devices watch loop: one pass does everything that must happen without a request to trigger it.

Presence (online/offline), command delivery to devices that came back,
re-sends and expiry, protocol switches seen in the ledger or reported in
health payloads, and recommendations refreshed from new measurements. Run by
`manage.py run_device_watch` (every DEVICE_WATCH_INTERVAL_S); each pass is
idempotent, so two watchers, or a restart, do no harm.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone

from . import commands, connectivity, online
from .models import Device, HealthLog

log = logging.getLogger(__name__)

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


def run(stop: threading.Event, interval: float) -> None:
    """Pass after pass until `stop` is set: `manage.py run_device_watch`, or a thread of a one-process server.

    Without REDIS_URL presence lives in the server's memory, so there the loop must run inside the server.
    """
    cursor = Cursor()
    while not stop.is_set():
        # A long-running loop never goes through Django's request cycle, which is what normally
        # drops a broken or over-age database connection: do it here, before each pass.
        close_old_connections()
        try:
            tick(cursor)
        except Exception:  # a database outage or a bug in one pass must not end the loop
            log.exception("device watch pass failed; retrying next interval")
        stop.wait(interval)


def start_thread(interval: float) -> threading.Event:
    """Run the loop on a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(target=run, args=(stop, interval), name="lpr-device-watch", daemon=True).start()
    return stop


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
