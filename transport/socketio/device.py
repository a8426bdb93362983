"""The `/device` namespace: a camera's Socket.IO connection, with the same auth, pipeline and acks as WebSocket.

Events from the camera: `envelope` (with an acknowledgement callback that
receives the ack object) and `frame` (one JPEG image, binary). A connection
refused for its token gets a `connect_error` whose data is
`{"error": "unauthenticated"|"forbidden"|"unavailable", "detail", "close_code": 4401|4403|4503}`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import socketio
from channels.db import database_sync_to_async
from django.conf import settings

from devices import presence
from devices.credentials import REVOKED_BECAUSE
from devices.models import Device
from transport import auth, envelope, live, pipeline
from transport.pipeline import Ack, Inbound
from transport.batching import MicroBatcher
from transport.errors import CLOSE_CODES
from transport.ws.device import authenticate, revocation, token_from_scope
from transport.ws.lifecycle import every, stop
from transport.ws.video import LatestFrame, is_jpeg

from . import server
from .server import NAMESPACE, room, sio

VIA = "socketio"


@dataclass(eq=False)
class _Connection:
    device: Device
    batcher: MicroBatcher
    relay: LatestFrame
    last_frame_at: float = float("-inf")
    unmet_since: float | None = None  # since when viewers wait for frames that do not come
    ticker: asyncio.Task | None = field(default=None)


class DeviceNamespace(socketio.AsyncNamespace):
    def __init__(self) -> None:
        super().__init__(NAMESPACE)
        self.connections: dict[str, _Connection] = {}

    async def on_connect(self, sid: str, environ: dict, auth_data: Any = None) -> None:
        result = await authenticate(_token(environ, auth_data), VIA)
        if isinstance(result, auth.AuthError):
            raise socketio.exceptions.ConnectionRefusedError(
                result.detail, {"error": result.code, "detail": result.detail, "close_code": CLOSE_CODES[result.code]}
            )
        device_id = result.id
        relay = LatestFrame(lambda frame: live.relay_frame(device_id, frame))
        conn = _Connection(result, MicroBatcher(_resolve), relay)
        self.connections[sid] = conn
        await self.enter_room(sid, room(device_id))
        await presence.connected(device_id, VIA, sid)
        live.device_status(device_id, True, VIA, "connected")
        if await presence.viewer_count(device_id) > 0:
            # Joining watched: told to start once the handshake is through (an emit now would precede it).
            conn.unmet_since = time.monotonic()
            asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(self._video(sid, "start")))
        conn.ticker = every(settings.REALTIME_PING_INTERVAL_S, lambda: self._tick(sid, conn))

    async def on_envelope(self, sid: str, *args: Any) -> dict:
        conn = self.connections.get(sid)
        if conn is None:
            return Ack(None, pipeline.REJECTED, "unauthenticated", "Not connected.").as_dict()
        body = _envelope_bytes(args)
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        refused = conn.batcher.add(Inbound(body, conn.device, VIA), future)
        return (refused or await future).as_dict()

    async def on_frame(self, sid: str, data: Any = None) -> None:
        conn = self.connections.get(sid)
        if conn is None:
            return
        if isinstance(data, bytes) and is_jpeg(data):
            conn.last_frame_at = time.monotonic()
            conn.relay.offer(data)
            return
        detail = "Event 'frame' carries one JPEG image as a binary argument."
        await database_sync_to_async(pipeline.record_refusal)(VIA, "unsupported_media_type", detail, b"", conn.device)
        await self.emit("error", {"type": "error", "error": "unsupported_media_type", "detail": detail}, to=sid)

    async def _tick(self, sid: str, conn: _Connection) -> bool:
        """Keep the presence entry fresh and the camera's stream matching its viewers (silence is Engine.IO's job)."""
        if (error := await revocation(conn.device)) is not None:
            # Key rotated or device deactivated: its tokens no longer hold. In a task of its own, because
            # the disconnect handler stops this very ticker.
            refusal = {"error": error, "detail": REVOKED_BECAUSE[error], "close_code": CLOSE_CODES[error]}
            asyncio.get_running_loop().create_task(server.disconnect([sid], refusal))
            return False
        await presence.refreshed(conn.device.id, VIA, sid)
        await self._sync_video(sid, conn)
        return True

    async def _sync_video(self, sid: str, conn: _Connection) -> None:
        """Heal a start or stop push that was lost.

        Pushes reach the camera without passing through this object, so the
        camera is judged by the frames it sends, and only after it has had
        two rounds to act on a push.
        """
        now, interval = time.monotonic(), settings.REALTIME_PING_INTERVAL_S
        watched = await presence.viewer_count(conn.device.id) > 0
        streaming = now - conn.last_frame_at < 2 * interval + 1
        if streaming and not watched:
            await self._video(sid, "stop")
        if not watched or streaming:
            conn.unmet_since = None
        elif conn.unmet_since is not None and now - conn.unmet_since > 2 * interval:
            conn.unmet_since = now
            await self._video(sid, "start")
        elif conn.unmet_since is None:
            conn.unmet_since = now

    async def _video(self, sid: str, action: str) -> None:
        await self.emit("video", live.device_frame("video", live.video_control(action)), to=sid)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self.connections.pop(sid, None)
        if conn is None:
            return
        await stop(conn.ticker)
        await presence.disconnected(conn.device.id, VIA, sid)
        live.device_status(conn.device.id, False, VIA, str(reason or "closed"))
        await conn.batcher.drained()


async def _resolve(futures: list[asyncio.Future], acks: list[Ack]) -> None:
    for future, ack in zip(futures, acks):
        if not future.done():
            future.set_result(ack)


def _envelope_bytes(args: tuple) -> bytes:
    """The event's one argument as bytes for the pipeline, so the size limit and every check apply as on the other
    transports. Anything else (no argument, several, text no encoder takes) still becomes bytes the pipeline
    refuses, so it is answered and recorded like any bad envelope, never dropped without an ack."""
    data = args[0] if len(args) == 1 else list(args)
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")  # a lone surrogate stays invalid UTF-8: refused, not mangled
    try:
        return envelope.encode_json(data)
    except (TypeError, ValueError, RecursionError):  # a lone surrogate inside, nesting past the stack
        return b"(an argument that cannot be encoded as JSON)"


def _token(environ: dict, auth_data: Any) -> str:
    if isinstance(auth_data, dict) and auth_data.get("token"):
        return str(auth_data["token"])
    return token_from_scope(environ.get("asgi.scope") or {})


sio.register_namespace(DeviceNamespace())
