"""The `/device` namespace: a camera's Socket.IO connection, with the same auth, pipeline and acks as WebSocket.

Events from the camera: `envelope` (with an acknowledgement callback that
receives the ack object) and `frame` (one JPEG image, binary). A connection
refused for its token gets a `connect_error` whose data is
`{"error": "unauthenticated"|"forbidden", "detail", "close_code": 4401|4403}`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import socketio
from channels.db import database_sync_to_async
from django.conf import settings

from devices import presence
from devices.models import Device
from transport import auth, envelope, live, pipeline
from transport.pipeline import Ack, Inbound
from transport.ws.batcher import MicroBatcher
from transport.ws.device import authenticate, token_from_scope
from transport.ws.video import LatestFrame, is_jpeg

from .server import NAMESPACE, room, sio

VIA = "socketio"


@dataclass(eq=False)
class _Connection:
    device: Device
    batcher: MicroBatcher
    relay: LatestFrame
    video_on: bool = False
    ticker: asyncio.Task | None = field(default=None)


class DeviceNamespace(socketio.AsyncNamespace):
    def __init__(self) -> None:
        super().__init__(NAMESPACE)
        self.connections: dict[str, _Connection] = {}

    async def on_connect(self, sid: str, environ: dict, auth_data: Any = None) -> None:
        result = await authenticate(_token(environ, auth_data), VIA)
        if isinstance(result, auth.AuthError):
            close_code = 4401 if result.code == "unauthenticated" else 4403
            raise socketio.exceptions.ConnectionRefusedError(
                result.detail, {"error": result.code, "detail": result.detail, "close_code": close_code}
            )
        device_id = result.id
        conn = _Connection(result, MicroBatcher(_resolve), LatestFrame(lambda frame: live.relay_frame(device_id, frame)))
        self.connections[sid] = conn
        await self.enter_room(sid, room(device_id))
        await presence.connected(device_id, VIA, sid)
        live.device_status(device_id, True, VIA, "connected")
        conn.ticker = asyncio.get_running_loop().create_task(self._tick(sid, conn))

    async def on_envelope(self, sid: str, data: Any = None) -> dict:
        conn = self.connections.get(sid)
        if conn is None:
            return Ack(None, pipeline.REJECTED, "unauthenticated", "Not connected.").as_dict()
        body = data.encode() if isinstance(data, str) else data if isinstance(data, bytes) else envelope.encode_json(data)
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        refused = conn.batcher.add(Inbound(body, conn.device, VIA), future)
        return (refused or await future).as_dict()

    async def on_frame(self, sid: str, data: Any = None) -> None:
        conn = self.connections.get(sid)
        if conn is None:
            return
        if isinstance(data, bytes) and is_jpeg(data):
            conn.relay.offer(data)
            return
        detail = "Event 'frame' carries one JPEG image as a binary argument."
        await database_sync_to_async(pipeline.record_refusal)(VIA, "unsupported_media_type", detail, b"", conn.device)
        await self.emit("error", {"type": "error", "error": "unsupported_media_type", "detail": detail}, to=sid)

    async def _tick(self, sid: str, conn: _Connection) -> None:
        """Keep the presence entry fresh and the camera's stream matching its viewers (silence is Engine.IO's job)."""
        while True:
            watched = await presence.viewer_count(conn.device.id) > 0
            if watched != conn.video_on:
                conn.video_on = watched
                frame = live.device_frame("video", live.video_control("start" if watched else "stop"))
                await self.emit("video", frame, to=sid)
            await asyncio.sleep(settings.REALTIME_PING_INTERVAL_S)
            await presence.refreshed(conn.device.id, VIA, sid)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self.connections.pop(sid, None)
        if conn is None:
            return
        if conn.ticker is not None:
            conn.ticker.cancel()
        await presence.disconnected(conn.device.id, VIA, sid)
        live.device_status(conn.device.id, False, VIA, str(reason or "closed"))
        await conn.batcher.drained()


async def _resolve(futures: list[asyncio.Future], acks: list[Ack]) -> None:
    for future, ack in zip(futures, acks):
        if not future.done():
            future.set_result(ack)


def _token(environ: dict, auth_data: Any) -> str:
    if isinstance(auth_data, dict) and auth_data.get("token"):
        return str(auth_data["token"])
    return token_from_scope(environ.get("asgi.scope") or {})


sio.register_namespace(DeviceNamespace())
