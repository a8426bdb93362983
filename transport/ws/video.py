"""Live video: cameras' JPEG frames relayed to the operators watching, newest frame wins, nothing stored.

Viewer protocol, `/ws/video/<device_id>/` (a logged-in operator's session):
the server sends each frame as one binary message (a JPEG image); the viewer
sends a text message (conventionally `{"type": "next"}`) each time it has
shown one. At most WINDOW frames are unanswered at a time; frames arriving
meanwhile replace one another, so a slow viewer gets fewer frames and a
viewer that stops reading holds at most WINDOW frames plus one on the server.

The first viewer of a device makes the server push `{"type": "video",
"action": "start", "max_fps"}` to the camera; the last one leaving pushes
`stop`. Viewers are counted across server processes (devices.presence).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from devices import presence
from devices.models import Device
from transport import live

from . import operators
from .consumers import NoHousekeepingPerMessage
from .lifecycle import LeavesOnce, every, stop

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"
WINDOW = 2
CLOSE_NOT_FOUND = 4404


def is_jpeg(data: bytes) -> bool:
    return data.startswith(JPEG_MAGIC)


class LatestFrame:
    """Send frames one at a time; frames offered while a send is in flight replace each other."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        self._send = send
        self._pending: bytes | None = None
        self._task: asyncio.Task | None = None

    def offer(self, frame: bytes) -> None:
        self._pending = frame
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._pending is not None:
                frame, self._pending = self._pending, None
                await self._send(frame)
        except Exception:  # a lost frame is no loss: the next one is on its way
            log.warning("video frame not relayed", exc_info=True)
        finally:
            self._task = None


class VideoViewerConsumer(NoHousekeepingPerMessage, LeavesOnce, AsyncWebsocketConsumer):
    device_id: str = ""

    async def connect(self) -> None:
        device_id = self.scope["url_route"]["kwargs"]["device_id"]
        await self.accept()
        if (code := await operators.refusal(self.scope.get("user"))) is not None:
            await self.close(code)
            return
        if not await Device.objects.filter(pk=device_id).aexists():
            await self.close(CLOSE_NOT_FOUND)
            return
        self.device_id, self.credits, self.pending = device_id, WINDOW, None
        await self.channel_layer.group_add(live.video_group(device_id), self.channel_name)
        if await presence.viewer_joined(device_id, self.channel_name) == 1:
            await live.apush_to_device(device_id, "video", live.video_control("start"))
        self.ticker = every(settings.REALTIME_PING_INTERVAL_S, self._stay_counted)

    async def video_frame(self, message: dict) -> None:
        if self.credits > 0:
            self.credits -= 1
            await self.send(bytes_data=message["frame"])
        else:
            self.pending = message["frame"]  # newest wins: the frame it replaces is dropped

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.device_id:
            return
        self.credits = min(WINDOW, self.credits + 1)
        if self.pending is not None:
            frame, self.pending = self.pending, None
            await self.video_frame({"frame": frame})

    async def _stay_counted(self) -> None:
        await presence.viewer_joined(self.device_id, self.channel_name)

    async def disconnect(self, code: int) -> None:
        await self._leave_once()

    async def leave(self) -> None:
        if not self.device_id:
            return
        await stop(getattr(self, "ticker", None))
        remaining = await presence.viewer_left(self.device_id, self.channel_name)
        await self.channel_layer.group_discard(live.video_group(self.device_id), self.channel_name)
        if remaining == 0:
            await live.apush_to_device(self.device_id, "video", live.video_control("stop"))
