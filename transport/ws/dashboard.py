"""`/ws/dashboard/`: the live event stream for signed-in operators (frame shape in transport.live).

Events arrive from transport.fanout already encoded (JSON lists, see
transport.live.send_to_dashboards) and leave as they came, joined into frames:
no dashboard socket decodes or encodes an event.

Flow control: the browser answers each frame with a text message
(conventionally `{"type": "next"}`) once it has handled it. At most WINDOW
frames of about FRAME_MAX_EVENTS events go unanswered; events not yet sent
(between two frames, or while the window is shut) wait here, at most
MAX_WAITING_BYTES of them (a few seconds of a busy fleet's reads, so a burst
or a busy process does not cost an operator events). A dashboard that
overflows that, or keeps the window shut for DASHBOARD_STALL_TIMEOUT_S, is
closed with 4408 (it reconnects and starts afresh): an operator's socket
that stops reading costs the server a bounded amount of memory, and a
dashboard that stays open has missed nothing.
"""

from __future__ import annotations

import asyncio
import time

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from transport import fanout, live, metrics
from transport.errors import CLOSE_CODES

from . import operators
from .consumers import NoHousekeepingPerMessage

CLOSE_TOO_SLOW = CLOSE_CODES["too_slow"]
WINDOW = 8  # frames sent and not yet answered
FRAME_MAX_EVENTS = live.EVENTS_PER_MESSAGE
MAX_WAITING_BYTES = 8 * 1024 * 1024  # encoded events held for one socket, not yet sent


class DashboardConsumer(NoHousekeepingPerMessage, AsyncWebsocketConsumer):
    pacer: live.Pacer | None = None

    async def connect(self) -> None:
        await self.accept()
        if (code := await operators.refusal(self.scope.get("user"))) is not None:
            await self.close(code)
            return
        self.unanswered, self.waiting, self.shut_since, self.closing = 0, [], None, False
        self.held_bytes = self.held_events = 0  # received and not yet sent, in the pacer or waiting
        # Bounded here by bytes: a pacer bounded by count would silently drop events while the process is busy.
        self.pacer = live.Pacer(self._send_events, interval=live.frame_interval, loop=asyncio.get_running_loop(),
                                max_items=None)
        fanout.join(self.take)

    def take(self, events_json: bytes, count: int) -> None:
        """A fanout sink: events for this socket, sent with the next frame."""
        if self.closing:
            return
        self.held_bytes += len(events_json)
        self.held_events += count
        if self.held_bytes > MAX_WAITING_BYTES:
            self._give_up()
            self.closing_task = asyncio.get_running_loop().create_task(self.close(CLOSE_TOO_SLOW))
            return
        self.pacer.add([(events_json, count)])

    async def _send_events(self, chunks: list[tuple[bytes, int]]) -> None:
        """Send `chunks` (encoded event lists with their counts) as frames of about FRAME_MAX_EVENTS events."""
        while chunks and not self.closing:
            if self.unanswered >= WINDOW:
                await self._hold(chunks)
                return
            taken, count = 0, 0
            while taken < len(chunks) and (not taken or count + chunks[taken][1] <= FRAME_MAX_EVENTS):
                count += chunks[taken][1]
                taken += 1
            frame, chunks = chunks[:taken], chunks[taken:]
            self.unanswered += 1
            self.held_bytes -= sum(len(c) for c, _ in frame)
            self.held_events -= count
            events = b",".join(c[1:-1] for c, n in frame if n)
            await self.send(text_data=(b'{"type":"events","events":[' + events + b"]}").decode())

    async def _hold(self, chunks: list[tuple[bytes, int]]) -> None:
        now = time.monotonic()
        self.shut_since = self.shut_since or now
        self.waiting.extend(chunks)
        if now - self.shut_since > settings.DASHBOARD_STALL_TIMEOUT_S:
            self._give_up()
            await self.close(CLOSE_TOO_SLOW)

    def _give_up(self) -> None:
        """Too slow: drop what is held (counted) and take no more; the caller closes the socket with 4408."""
        metrics.count_dropped_live_events(self.held_events)
        self.waiting, self.closing, self.held_bytes, self.held_events = [], True, 0, 0
        fanout.leave(self.take)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Any message answers the oldest unanswered frame (older pages send keep-alives, which count too)."""
        if self.pacer is None:
            return
        self.unanswered, self.shut_since = max(0, self.unanswered - 1), None
        if self.waiting:  # older than anything in the pacer, so they go first
            chunks, self.waiting = self.waiting, []
            await self._send_events(chunks)

    async def disconnect(self, code: int) -> None:
        if self.pacer is not None:
            self.closing = True
            fanout.leave(self.take)
