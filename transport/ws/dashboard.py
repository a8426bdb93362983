"""`/ws/dashboard/`: the live event stream for signed-in operators (frame shape in transport.live)."""

from __future__ import annotations

import asyncio

from channels.generic.websocket import AsyncWebsocketConsumer

from transport import envelope, live

from . import operators


class DashboardConsumer(AsyncWebsocketConsumer):
    pacer: live.Pacer | None = None

    async def connect(self) -> None:
        await self.accept()
        if (code := await operators.refusal(self.scope.get("user"))) is not None:
            await self.close(code)
            return
        self.pacer = live.Pacer(self._send_events, loop=asyncio.get_running_loop())
        await self.channel_layer.group_add(live.DASHBOARD_GROUP, self.channel_name)

    async def live_events(self, message: dict) -> None:
        if self.pacer is not None:
            self.pacer.add(message["events"])

    async def _send_events(self, events: list[dict]) -> None:
        await self.send(text_data=envelope.encode_json({"type": "events", "events": events}).decode())

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        pass  # the stream is one way; browsers may send keep-alives

    async def disconnect(self, code: int) -> None:
        if self.pacer is not None:
            await self.channel_layer.group_discard(live.DASHBOARD_GROUP, self.channel_name)
