"""Ways to reach a camera, registered by the transports at startup, so the domain never imports a transport.

`transport/apps.py` registers two pushers and the broadcast hooks:
    "live"  open WebSocket/Socket.IO connections, on any server process (transport.live)
    "mqtt"  the device's `down/` topics on the broker (transport.mqtt.downlink)
A pusher is `push(device_id, kind, body) -> bool`: True once the bytes were
handed over (a socket frame written, a QoS 1 PUBACK), which is not a receipt.

`routes(device, kind)` lists what to try, best first: an open socket, else
MQTT while the device's status topic says `online`. No route means the
camera fetches it itself (the REST poll, `GET device/config/`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from . import presence
from .models import Device

log = logging.getLogger(__name__)

Push = Callable[[str, str, dict], bool]
LIVE_TRANSPORTS = ("websocket", "socketio")


@dataclass(frozen=True, slots=True)
class Route:
    transport: str  # what the records name: websocket, socketio or mqtt
    push: Push


_pushers: dict[str, tuple[Push, frozenset[str]]] = {}
_hooks: dict[str, Callable[..., Any]] = {}


def register(name: str, push: Push, kinds: tuple[str, ...]) -> None:
    """Make a channel available; `kinds` are the pushes it can carry (command, config, protocol)."""
    _pushers[name] = (push, frozenset(kinds))


def unregister(name: str) -> None:
    _pushers.pop(name, None)


def register_hook(event: str, hook: Callable[..., Any]) -> None:
    """Broadcast hooks: `device_status`, `protocol_switch`, `command`, `alert`, `revoked` (see `announce`)."""
    _hooks[event] = hook


def announce(event: str, *args: Any, **fields: Any) -> None:
    """Tell dashboards (through whatever registered the hook); a no-op when nothing did."""
    hook = _hooks.get(event)
    if hook is None:
        return
    try:
        hook(*args, **fields)
    except Exception:  # a broadcast failing must never undo or block the change it reports
        log.exception("announcing %s failed", event)


def live_transports(device_id: str) -> list[str]:
    """The real-time transports the device holds a connection on, WebSocket first."""
    return live_transports_of([device_id])[device_id]


def live_transports_of(device_ids: list[str]) -> dict[str, list[str]]:
    """`live_transports` for many devices, in one presence lookup."""
    try:
        held = presence.transports_of_many(device_ids)
    except Exception as exc:  # Redis down: act as if no socket were open; MQTT and REST still work
        log.warning("presence lookup for %d device(s) failed: %s", len(device_ids), exc)
        return {d: [] for d in device_ids}
    return {d: [t for t in LIVE_TRANSPORTS if t in held[d]] for d in device_ids}


def routes(device: Device, kind: str) -> list[Route]:
    out = []
    live = _pushers.get("live")
    if live and kind in live[1] and (held := live_transports(device.id)):
        out.append(Route(held[0], live[0]))
    mqtt = _pushers.get("mqtt")
    if mqtt and kind in mqtt[1] and device.mqtt_status == "online":
        out.append(Route("mqtt", mqtt[0]))
    return out


def push(device: Device, kind: str, body: dict) -> str | None:
    """Push over the first route that takes it, falling through on failure; the transport used, or None."""
    for route in routes(device, kind):
        try:
            if route.push(device.id, kind, body):
                return route.transport
        except Exception:
            log.exception("push %s to %s over %s raised", kind, device.id, route.transport)
        log.warning("push %s to %s over %s failed; trying the next channel", kind, device.id, route.transport)
    return None


def publish_retained(device_id: str, kind: str, body: dict) -> bool:
    """MQTT's retained copy (the desired config), published whatever the device's status: it gets it on subscribe."""
    mqtt = _pushers.get("mqtt")
    if not mqtt or kind not in mqtt[1]:
        return False
    try:
        return bool(mqtt[0](device_id, kind, body))
    except Exception:
        log.exception("retained %s for %s failed", kind, device_id)
        return False
