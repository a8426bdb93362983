"""The contract's MQTT topic names, built and parsed in one place."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

ROOT = "lpr/v1/devices"
UPLINK = f"{ROOT}/+/up/+"
STATUS = f"{ROOT}/+/status"
DATA_TYPES = frozenset({"detection", "health", "config", "control"})


@dataclass(frozen=True, slots=True)
class Topic:
    device_id: str
    kind: str  # "up" or "status"
    data_type: str | None = None


def uplink_subscription(group: str | None = None) -> str:
    """`lpr/v1/devices/+/up/+`, or its MQTT 5 shared form so several bridges split the stream."""
    return f"$share/{group}/{UPLINK}" if group else UPLINK


@lru_cache(maxsize=65536)  # a device sends on the same few topics: parse each once
def parse(topic: str) -> Topic | None:
    """The device and kind a topic names, or None for a topic the bridge does not handle."""
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:3]) != ROOT or not parts[3]:
        return None
    device_id, rest = parts[3], parts[4:]
    if rest == ["status"]:
        return Topic(device_id, "status")
    if len(rest) == 2 and rest[0] == "up":
        return Topic(device_id, "up", rest[1])
    return None


def up(device_id: str, data_type: str) -> str:
    return f"{ROOT}/{device_id}/up/{data_type}"


def down(device_id: str, leaf: str) -> str:
    return f"{ROOT}/{device_id}/down/{leaf}"


def status(device_id: str) -> str:
    return f"{ROOT}/{device_id}/status"
