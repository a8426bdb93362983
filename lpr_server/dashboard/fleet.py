"""The fleet as operators see it: each device's state (online, degraded, offline) and what one device page shows.

State is read from the columns the watch loop keeps current (`Device.online`,
`connectivity_score`), so a list of thousands of devices is one query:
- online: any transport says it is there (devices/online.py) and its link scores
  at least DEGRADED_BELOW;
- degraded: online, but its link scores below DEGRADED_BELOW (only MQTT is
  recommended for it, devices/connectivity.py);
- offline: not online (or deactivated).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from devices import channels, configuration
from devices.connectivity import NEEDS
from devices.models import Command, Device, HealthLog

DEGRADED_BELOW = NEEDS["rest"]
STATES = ("online", "degraded", "offline")
HEALTH_POINTS = 300
HEALTH_WINDOW = timedelta(hours=24)
HISTORY_ROWS = 25


def state_of(device: Device) -> str:
    if not device.active or not device.online:
        return "offline"
    if device.connectivity_score is not None and device.connectivity_score < DEGRADED_BELOW:
        return "degraded"
    return "online"


def _degraded() -> Q:
    return Q(active=True, online=True, connectivity_score__lt=DEGRADED_BELOW)


def fleet_counts() -> dict[str, int]:
    """How many devices are online, degraded and offline: one aggregate query."""
    agg = Device.objects.aggregate(
        total=Count("id"), degraded=Count("id", filter=_degraded()),
        up=Count("id", filter=Q(active=True, online=True)),
    )  # fmt: skip
    online = agg["up"] - agg["degraded"]
    return {"online": online, "degraded": agg["degraded"], "offline": agg["total"] - agg["up"], "total": agg["total"]}


@dataclass
class DeviceRow:
    id: str
    name: str
    site: str
    state: str
    transport: str
    score: float | None
    recommended: str
    last_seen_at: datetime | None
    firmware: str
    drift: bool = False


def device_rows(with_drift: bool = False) -> list[DeviceRow]:
    """Every device with its state, current transport, score and last contact; drift in one more query."""
    devices = list(Device.objects.order_by("site", "id").only(
        "id", "name", "site", "active", "online", "connectivity_score", "last_transport", "recommended_protocol",
        "last_seen_at", "firmware", "desired_config_version", "desired_config",
    ))  # fmt: skip
    drift = configuration.drift_for(devices) if with_drift else {}
    return [
        DeviceRow(d.id, d.name, d.site, state_of(d), d.last_transport, d.connectivity_score, d.recommended_protocol,
                  d.last_seen_at, d.firmware, d.id in drift and drift[d.id].differs)
        for d in devices
    ]  # fmt: skip


@dataclass
class DevicePage:
    device: Device
    state: str
    live_transports: list[str]
    drift: configuration.Drift
    desired: dict
    reported: dict | None
    health: list[dict]
    commands: list[Command]
    switches: list
    presence: list
    can_command: bool
    known_actions: tuple[str, ...]


def device_page(device: Device, user, now: datetime | None = None) -> DevicePage:
    """Everything the device page shows: state, drift, health series, command history, switches, presence."""
    from devices.commands import KNOWN_ACTIONS

    now = now or timezone.now()
    reported = configuration.latest_reported(device)
    return DevicePage(
        device=device, state=state_of(device), live_transports=channels.live_transports(device.id),
        drift=configuration.drift_from(device, reported),
        desired={**configuration.desired(device), "values": _pretty(device.desired_config)},
        reported=None if reported is None else {"version": reported.version, "values": _pretty(reported.values),
                                                "reported_at": reported.reported_at},
        health=health_series(device, now - HEALTH_WINDOW),
        commands=_with_params_text(device.commands.prefetch_related("transitions")[:HISTORY_ROWS]),
        switches=list(device.protocol_switches.all()[:HISTORY_ROWS]),
        presence=list(device.presence_changes.all()[:HISTORY_ROWS]),
        can_command=can_send_commands(user), known_actions=KNOWN_ACTIONS,
    )  # fmt: skip


def health_series(device: Device, since: datetime) -> list[dict]:
    """The newest HEALTH_POINTS reports since `since`, oldest first (the index on device, -reported_at)."""
    rows = (
        HealthLog.objects.filter(device=device, reported_at__gte=since)
        .order_by("-reported_at")
        .values("reported_at", "cpu_percent", "temperature_c", "latency_ms", "packet_loss")[:HEALTH_POINTS]
    )
    return [{**r, "reported_at": r["reported_at"].isoformat()} for r in reversed(rows)]


def can_send_commands(user) -> bool:
    """Staff, and operators (who hold devices.add_command), as in the operator API."""
    return bool(user.is_staff or user.has_perm("devices.add_command"))


def _pretty(values) -> str:
    return json.dumps(values, indent=2, sort_keys=True)


def _with_params_text(commands) -> list[Command]:
    out = list(commands)
    for c in out:
        c.params_json = json.dumps(c.params, sort_keys=True) if c.params else ""
    return out
