"""`/ws/device/`: a camera's WebSocket (CONTRACT section 4). Authenticate, queue, ack after commit, relay video."""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from devices import presence
from devices.models import Device
from transport import auth, envelope, live, pipeline
from transport.errors import CLOSE_CODES
from transport.pipeline import Ack, Inbound

from transport.batching import MicroBatcher
from .consumers import NoHousekeepingPerMessage
from .lifecycle import LeavesOnce, every, stop
from .video import LatestFrame, is_jpeg

VIA = "websocket"
CLOSE_SILENT = CLOSE_CODES["too_slow"]
_encode = envelope.encode_json


def token_from_scope(scope: dict) -> str:
    """The JWT from `?token=` or the `Authorization` header (`Bearer <jwt>`, or the bare token)."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("token"):
        return query["token"][0]
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, rest = value.decode("latin-1").strip().partition(" ")
            return rest.strip() if rest else scheme
    return ""


async def authenticate(token: str, via: str) -> Device | auth.AuthError:
    """The token's device, or why the connection is refused: a refused token is recorded; storage out of reach
    is `unavailable` (close code 4503: connect again shortly), not a failed handshake the camera cannot read."""
    try:
        return await database_sync_to_async(auth.authenticate_token)(token)
    except auth.AuthError as exc:
        await database_sync_to_async(pipeline.record_refusal)(via, exc.code, exc.detail)
        return exc
    except pipeline.STORAGE_DOWN:
        return auth.AuthError("unavailable", "Storage is unavailable; connect again in a few seconds.")


def _revocation(device: Device) -> str | None:
    now = Device.objects.filter(pk=device.pk).values_list("key_version", "active").first()
    if now is None or now[0] != device.key_version:
        return "unauthenticated"
    return None if now[1] else "forbidden"


async def revocation(device: Device) -> str | None:
    """Why the connection's token no longer holds: `unauthenticated` once the key was rotated (or the device
    removed), `forbidden` once the device is deactivated; None while it holds."""
    return await database_sync_to_async(_revocation)(device)


class DeviceConsumer(NoHousekeepingPerMessage, LeavesOnce, AsyncWebsocketConsumer):
    device: Device | None = None

    async def connect(self) -> None:
        result = await authenticate(token_from_scope(self.scope), VIA)
        if isinstance(result, auth.AuthError):
            await self.accept()  # accepted, then closed: a close code reaches the camera, a refused handshake would not
            await self.close(CLOSE_CODES[result.code])
            return
        self.device, self.leave_reason = result, "closed"
        self.batcher: MicroBatcher[None] = MicroBatcher(self._send_acks)
        self.relay = LatestFrame(lambda frame: live.relay_frame(result.id, frame))
        self.pings: dict[str, float] = {}
        self.last_heard = time.monotonic()
        self.video_on = False
        # Reachable for pushes before the camera learns it is connected.
        await self.channel_layer.group_add(live.device_group(result.id), self.channel_name)
        await presence.connected(result.id, VIA, self.channel_name)
        await self.accept()
        live.device_status(result.id, True, VIA, "connected")
        await self._sync_video()
        self.ticker = every(settings.REALTIME_PING_INTERVAL_S, self._tick)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.device is None:
            return
        self.last_heard = time.monotonic()
        if text_data is None:
            await self._video_frame(bytes_data or b"")
        elif '"pong"' not in text_data or not await self._pong(text_data):
            refused = self.batcher.add(Inbound(text_data.encode(), self.device, VIA), None)
            if refused is not None:
                await self._send_acks([None], [refused])

    async def _send_acks(self, _tokens: list, acks: list[Ack]) -> None:
        for ack in acks:
            await self.send(text_data=_encode(ack.as_dict()).decode())

    async def _video_frame(self, data: bytes) -> None:
        if is_jpeg(data):
            self.relay.offer(data)
            return
        detail = "Binary frames are live video and must each be one JPEG image."
        await database_sync_to_async(pipeline.record_refusal)(VIA, "unsupported_media_type", detail, b"", self.device)
        await self.send_frame({"type": "error", "error": "unsupported_media_type", "detail": detail})

    async def send_frame(self, frame: dict) -> None:
        await self.send(text_data=_encode(frame).decode())

    # --- pushes from anywhere (live.push_to_device) ---

    async def device_push(self, message: dict) -> None:
        frame = message["frame"]
        if frame.get("type") == "video":
            self.video_on = frame.get("action") == "start"
        await self.send_frame(frame)

    async def device_revoke(self, message: dict) -> None:
        """Key rotated or device deactivated (live.arevoke): checked here, since a newer connection may hold."""
        await self._closed_if_revoked()

    # --- ping, presence, silence, revocation ---

    async def _closed_if_revoked(self) -> bool:
        error = await revocation(self.device)
        if error is None:
            return False
        self.leave_reason = "revoked"
        await presence.disconnected(self.device.id, VIA, self.channel_name)  # gone before the camera hears it
        await self.close(CLOSE_CODES[error])
        return True

    async def _tick(self) -> bool:
        if time.monotonic() - self.last_heard > settings.REALTIME_SILENT_TIMEOUT_S:
            self.leave_reason = "silent"
            await presence.disconnected(self.device.id, VIA, self.channel_name)  # gone before the camera hears it
            await self.close(CLOSE_SILENT)
            return False
        if await self._closed_if_revoked():
            return False
        sent_at = timezone.now().isoformat()
        self.pings = {k: v for k, v in self.pings.items() if time.monotonic() - v < 300}
        self.pings[sent_at] = time.monotonic()
        await self.send_frame({"type": "ping", "sent_at": sent_at})
        await presence.refreshed(self.device.id, VIA, self.channel_name)
        await self._sync_video()
        return True

    async def _pong(self, text: str) -> bool:
        try:
            frame = envelope.decode_json(text)
        except ValueError:
            return False
        if not isinstance(frame, dict) or frame.get("type") != "pong":
            return False
        started = self.pings.pop(str(frame.get("sent_at")), None)
        if started is not None:  # a pong for a ping we did not send measures nothing
            rtt_ms = (time.monotonic() - started) * 1000
            await database_sync_to_async(presence.record_latency)(self.device.id, rtt_ms)
        return True

    async def _sync_video(self) -> None:
        """Start or stop the camera's stream to match the viewers; heals a start/stop push that was lost."""
        watched = await presence.viewer_count(self.device.id) > 0
        if watched != self.video_on:
            self.video_on = watched
            await self.send_frame(live.device_frame("video", live.video_control("start" if watched else "stop")))

    async def disconnect(self, code: int) -> None:
        await self._leave_once()

    async def leave(self) -> None:
        if self.device is None:
            return
        await stop(getattr(self, "ticker", None))
        await presence.disconnected(self.device.id, VIA, self.channel_name)
        live.device_status(self.device.id, False, VIA, self.leave_reason)
        await self.channel_layer.group_discard(live.device_group(self.device.id), self.channel_name)
        await self.batcher.drained()
