"""Desired configuration (set by an administrator), reported configuration (what the camera runs), and drift.

The desired configuration goes to the camera as `{version, values, profile,
protocol_order}`: pushed on an open WebSocket/Socket.IO connection, retained
on MQTT `down/config` (a camera gets it whenever it subscribes), and served
by `GET /api/v1/device/config/`. The camera reports what it runs as a
`config` message; every reported version is kept (ReportedConfig), and a
report older than one already received is refused by the pipeline
(`stale_reports`). Drift: the newest report differs from the desired version
or values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import Max

from . import channels
from .connectivity import profile_order, refresh
from .models import Device, ReportedConfig
from .storable import contains_nul


class ConfigError(ValueError):
    def __init__(self, detail: str, field: str):
        super().__init__(detail)
        self.code, self.detail, self.field = "invalid", detail, field


@dataclass(frozen=True, slots=True)
class Drift:
    desired_version: int
    reported_version: int | None
    differs: bool

    def as_dict(self) -> dict[str, Any]:
        return {"desired_version": self.desired_version, "reported_version": self.reported_version, "drift": self.differs}


def desired(device: Device) -> dict[str, Any]:
    """The configuration as the camera receives it, on every transport."""
    return {
        "version": device.desired_config_version,
        "values": device.desired_config,
        "profile": device.profile,
        "protocol_order": profile_order(device.profile),
    }


MAX_VERSION = 2**31 - 1  # the column's range


def set_desired(device: Device, values: Any, version: int | None = None, profile: str | None = None) -> int:
    """Store a new desired configuration and push it once committed; returns its version.

    `version` defaults to the next one; an explicit version must be above the current.
    """
    if not isinstance(values, dict):
        raise ConfigError("The configuration must be a JSON object of values.", "values")
    if contains_nul(values):
        raise ConfigError("The configuration may not contain the NUL character (\\u0000).", "values")
    if version is None:
        version = device.desired_config_version + 1
    elif isinstance(version, bool) or not isinstance(version, int) or not device.desired_config_version < version <= MAX_VERSION:
        raise ConfigError(f"version must be a whole number above {device.desired_config_version} "
                          f"(and at most {MAX_VERSION}).", "version")  # fmt: skip
    if profile is not None:
        if profile not in dict(Device._meta.get_field("profile").choices):
            raise ConfigError(f"Unknown deployment profile {profile!r}.", "profile")
        device.profile = profile
    device.desired_config, device.desired_config_version = values, version
    with transaction.atomic():
        device.save(update_fields=["desired_config", "desired_config_version", "profile"])
        transaction.on_commit(lambda: push(device))
    return version


def push(device: Device) -> str | None:
    """Send the desired configuration over the live channel and keep MQTT's retained copy current.

    Returns the transport of the live push, or None (the camera reads it on REST, or MQTT on subscribe).
    """
    body = desired(device)
    via = channels.push(device, "config", body)
    if via != "mqtt":
        channels.publish_retained(device.id, "config", body)
    refresh({device.id})  # the profile is part of it, and sets where the recommendation starts
    return via


def latest_reported(device: Device) -> ReportedConfig | None:
    return ReportedConfig.objects.filter(device=device).order_by("-version", "-reported_at").first()


def drift(device: Device) -> Drift:
    return drift_from(device, latest_reported(device))


def drift_from(device: Device, reported: ReportedConfig | None) -> Drift:
    desired_set = device.desired_config_version > 0  # version 0: nobody set one, so nothing can drift from it
    if reported is None:
        return Drift(device.desired_config_version, None, desired_set)
    differs = reported.version != device.desired_config_version or reported.values != device.desired_config
    return Drift(device.desired_config_version, reported.version, desired_set and differs)


def drift_for(devices: list[Device]) -> dict[str, Drift]:
    """Drift of many devices in one query (lists in the admin and the API)."""
    if connection.features.can_distinct_on_fields:
        rows = (
            ReportedConfig.objects.filter(device__in=devices)
            .order_by("device_id", "-version", "-reported_at")
            .distinct("device_id")
        )
        newest = {r.device_id: r for r in rows}
    else:  # SQLite (the laptop default): one query per device
        newest = {d.id: latest_reported(d) for d in devices}
    return {d.id: drift_from(d, newest.get(d.id)) for d in devices}


def stale_reports(reports: list[tuple[str, int]]) -> set[int]:
    """Indexes of (device_id, version) reports older than a version the device already reported.

    One query per batch; reports inside the batch count too, in order.
    """
    if not reports:
        return set()
    best = dict(
        ReportedConfig.objects.filter(device_id__in={d for d, _ in reports})
        .values("device_id")
        .annotate(top=Max("version"))
        .values_list("device_id", "top")
    )
    stale = set()
    for i, (device_id, version) in enumerate(reports):
        top = best.get(device_id)
        if top is not None and version < top:
            stale.add(i)
        else:
            best[device_id] = version
    return stale
