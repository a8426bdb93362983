"""Socket.IO transport (python-socketio ``AsyncClient``): namespace ``/device``.

The handshake's ``auth`` is ``{"token": JWT}``; each envelope is emitted as
event ``envelope`` with an acknowledgement callback (``call``) that receives the
ack object. The server emits ``command``, ``config``, ``protocol`` (and
``video``); live frames go out as event ``frame`` with a binary argument.
This is the only module that imports python-socketio.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import socketio

from .base import Ack, DeviceIdentity, PushHandler, Transport, TransportError
from .http import DeviceApi

log = logging.getLogger(__name__)
NAMESPACE = "/device"


class SocketIOTransport(Transport):
    name = "socketio"

    def __init__(
        self, device: DeviceIdentity, on_push: PushHandler | None = None, *,
        api: DeviceApi | None = None, ack_timeout_s: float = 10.0, open_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(device, on_push)
        self.api = api or DeviceApi(device)
        self._own_api = api is None
        self.ack_timeout_s, self.open_timeout_s = ack_timeout_s, open_timeout_s
        self._sio: socketio.AsyncClient | None = None

    @property
    def connected(self) -> bool:
        return self._sio is not None and self._sio.connected and \
            NAMESPACE in self._sio.namespaces

    def _client(self) -> socketio.AsyncClient:
        sio = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        for event in ("command", "config", "protocol", "video"):
            sio.on(event, self._pusher(event), namespace=NAMESPACE)
        return sio

    def _pusher(self, event: str):  # type: ignore[no-untyped-def]
        async def handler(data: Any = None) -> None:
            body = data if isinstance(data, dict) else {"value": data}
            if event == "command" and "command" not in body:
                body = {"command": body}
            self.dispatch({**body, "type": event})
        return handler

    async def connect(self) -> None:
        last: Exception | None = None
        for refresh in (False, True):
            token = await self.api.token(refresh=refresh)
            self._sio = self._client()
            try:
                await self._sio.connect(
                    self.device.server_url, auth={"token": token}, namespaces=[NAMESPACE],
                    socketio_path="socket.io", wait_timeout=self.open_timeout_s,
                )
                return
            except (socketio.exceptions.ConnectionError, OSError, asyncio.TimeoutError) as exc:
                last = exc
                await self._drop()
                # A refused namespace is most likely an expired token: try a fresh one once.
                if "namespace" not in str(exc).lower() and "401" not in str(exc):
                    break
        raise TransportError("connect_failed", repr(last))

    async def send(self, envelopes: list[dict[str, Any]]) -> list[Ack]:
        sio = self._sio
        if sio is None or not self.connected:
            raise TransportError("connection_lost", "not connected")
        results = await asyncio.gather(
            *(sio.call("envelope", e, namespace=NAMESPACE, timeout=self.ack_timeout_s)
              for e in envelopes),
            return_exceptions=True,
        )
        # A server answering with several arguments gives a tuple; the ack is the first.
        results = [r[0] if isinstance(r, tuple) and r else r for r in results]
        acks = [r for r in results if isinstance(r, dict)]
        if len(acks) == len(envelopes):
            return acks
        lost = sio is not self._sio or not self.connected
        kind = "connection_lost" if lost or any(
            isinstance(r, socketio.exceptions.BadNamespaceError) for r in results) else "timeout"
        raise TransportError(kind, f"{len(envelopes) - len(acks)} acks missing", acks)

    async def send_frame(self, jpeg: bytes) -> None:
        if self._sio is not None and self.connected:
            await self._sio.emit("frame", jpeg, namespace=NAMESPACE)

    async def _drop(self) -> None:
        sio, self._sio = self._sio, None
        if sio is not None:
            try:
                await sio.disconnect()
            except Exception:  # already half gone; nothing useful to do
                log.debug("socket.io disconnect failed", exc_info=True)

    async def close(self) -> None:
        await self._drop()
        if self._own_api:
            await self.api.close()
