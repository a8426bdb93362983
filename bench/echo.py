"""Bare echo endpoints: the ceilings the WebSocket and Socket.IO phases are measured against.

Served by the same Daphne only when `LPR_BENCH_VIEWS=1` (lpr_server/asgi.py):
`/bench/ws/echo/` and the Socket.IO namespace `/bench-echo` answer every
envelope at once with the ack a camera expects, and touch no database, so
they measure what the server's WebSocket and Socket.IO layers cost alone.
"""

from __future__ import annotations

import msgspec
from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import path

NAMESPACE = "/bench-echo"


class _Envelope(msgspec.Struct):
    message_id: str


_decode = msgspec.json.Decoder(_Envelope).decode
_encode = msgspec.json.Encoder().encode


def ack(message_id: str) -> dict:
    return {"type": "ack", "message_id": message_id, "status": "accepted"}


class EchoConsumer(AsyncWebsocketConsumer):
    async def dispatch(self, message: dict) -> None:  # as lean as the device consumer: no per-frame DB cleanup
        await getattr(self, message["type"].replace(".", "_"))(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=_encode(ack(_decode(text_data or bytes_data).message_id)).decode())


websocket_urlpatterns = [path("bench/ws/echo/", EchoConsumer.as_asgi())]


def register(sio) -> None:
    """The `/bench-echo` namespace on the server's Socket.IO instance."""

    @sio.on("connect", namespace=NAMESPACE)
    async def connect(sid, environ, auth=None):
        return True

    @sio.on("envelope", namespace=NAMESPACE)
    async def envelope(sid, env):
        return ack(env["message_id"])
