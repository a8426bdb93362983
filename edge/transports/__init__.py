"""Transport adapters behind one interface (:class:`~edge.transports.base.Transport`)."""
from __future__ import annotations

from typing import Any

from .base import Ack, DeviceIdentity, Push, PushHandler, Transport, TransportError
from .http import DeviceApi

__all__ = [
    "Ack", "DeviceApi", "DeviceIdentity", "Push", "PushHandler", "Transport",
    "TransportError", "make_transport",
]


def make_transport(
    name: str, device: DeviceIdentity, on_push: PushHandler | None = None,
    api: DeviceApi | None = None, **options: Any,
) -> Transport:
    """Build the adapter for ``name`` (imports each library only when it is used)."""
    if name == "rest":
        from .rest import RestTransport
        return RestTransport(device, on_push, api=api, **options)
    if name == "websocket":
        from .ws import WebSocketTransport
        return WebSocketTransport(device, on_push, api=api, **options)
    if name == "socketio":
        from .sio import SocketIOTransport
        return SocketIOTransport(device, on_push, api=api, **options)
    if name == "mqtt":
        from .mqtt import MqttTransport
        return MqttTransport(device, on_push, **options)
    raise ValueError(f"unknown transport {name!r}")
