"""The Socket.IO server object, how it is mounted beside Channels, and pushes to a device's room.

With REDIS_URL set the server uses python-socketio's Redis manager, so an
emit from any process (a server, a worker, the MQTT bridge) reaches the
client wherever it is connected. Kept free of handlers, so that
`transport.live` can emit without importing them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import socketio
from django.conf import settings

NAMESPACE = "/device"
PATH = "socket.io"
# Engine.IO packets carry envelopes (≤ 256 KiB) and live video frames.
MAX_PACKET_BYTES = 1024 * 1024


def _manager() -> socketio.AsyncManager | None:
    if not settings.REDIS_URL:
        return None  # one process: python-socketio's in-memory manager
    # Redis pub/sub channels are not scoped by database number; the channel name is, so that
    # deployments (and test runs) sharing one Redis server do not hear each other.
    db = urlsplit(settings.REDIS_URL).path.strip("/") or "0"
    return socketio.AsyncRedisManager(settings.REDIS_URL, channel=f"lpr.socketio.{db}")


sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=_manager(),
    # Engine.IO's own heartbeat closes silent clients: a ping every interval, answered within the rest of the timeout.
    ping_interval=settings.REALTIME_PING_INTERVAL_S,
    ping_timeout=max(1.0, settings.REALTIME_SILENT_TIMEOUT_S - settings.REALTIME_PING_INTERVAL_S),
    max_http_buffer_size=MAX_PACKET_BYTES,
    cors_allowed_origins=[],  # cameras are not browsers; no cross-origin headers
)


def room(device_id: str) -> str:
    return f"device:{device_id}"


async def emit_to_device(device_id: str, event: str, data: dict) -> None:
    await sio.emit(event, data, to=room(device_id), namespace=NAMESPACE)


async def disconnect(sids: list[str], refusal: dict) -> None:
    """Tell each connection why (`revoked`: `{"error", "detail", "close_code"}`) and close it, on any process."""
    for sid in sids:
        await sio.emit("revoked", refusal, to=sid, namespace=NAMESPACE)
        await sio.disconnect(sid, namespace=NAMESPACE)


def mount(other_app):
    """Serve `/socket.io/` with the Socket.IO server and everything else with `other_app`."""
    from . import device  # noqa: F401  registers the /device namespace handlers

    return socketio.ASGIApp(sio, other_asgi_app=other_app, socketio_path=PATH)
