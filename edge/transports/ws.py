"""Plain WebSocket transport (``websockets``): ``ws(s)://host/ws/device/?token=<JWT>``.

Each text frame is one envelope; the server answers each with an ack frame
after commit. Server pushes (command, config, protocol, video) go to
``on_push``; ``ping`` is answered here with a ``pong`` carrying ``sent_at``.
Close code 4401 (bad or expired token): fetch a new token and reconnect once.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .base import Ack, AckWaiter, DeviceIdentity, PushHandler, Transport, TransportError
from .http import DeviceApi

log = logging.getLogger(__name__)
AUTH_CLOSE = 4401


def ws_url(server_url: str, token: str) -> str:
    parts = urlsplit(server_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, "/ws/device/", f"token={quote(token)}", ""))


class WebSocketTransport(Transport):
    name = "websocket"

    def __init__(
        self, device: DeviceIdentity, on_push: PushHandler | None = None, *,
        api: DeviceApi | None = None, ack_timeout_s: float = 10.0, open_timeout_s: float = 10.0,
        url: str | None = None,
    ) -> None:
        super().__init__(device, on_push)
        self.api = api or DeviceApi(device)
        self._own_api = api is None
        self.ack_timeout_s, self.open_timeout_s = ack_timeout_s, open_timeout_s
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._acks = AckWaiter()
        self.close_code: int | None = None
        self.url = url or device.server_url  # another address for the socket (a proxy, a tester)

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._reader is not None and not self._reader.done()

    @property
    def needs_reauth(self) -> bool:
        return self.close_code == AUTH_CLOSE

    async def connect(self) -> None:
        for refresh in (False, True):
            token = await self.api.token(refresh=refresh)
            try:
                self._ws = await connect(
                    ws_url(self.url, token), open_timeout=self.open_timeout_s,
                    proxy=None, max_size=2 ** 20, ping_interval=20, ping_timeout=20,
                )
                break
            except InvalidStatus as exc:
                if exc.response.status_code in (401, 403) and not refresh:
                    continue
                raise TransportError("auth" if exc.response.status_code in (401, 403)
                                     else "connect_failed", str(exc)) from exc
            except (OSError, InvalidHandshake, asyncio.TimeoutError) as exc:
                raise TransportError("connect_failed", repr(exc)) from exc
        else:  # pragma: no cover - the loop always breaks or raises
            raise TransportError("auth", "token refused")
        self.close_code = None
        self._acks = AckWaiter()
        self._reader = asyncio.create_task(self._read(self._ws))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                if isinstance(raw, str):
                    await self._handle(ws, raw)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            kind = "auth" if ws.close_code == AUTH_CLOSE else "connection_lost"
            if kind == "auth":
                self.api.invalidate_token()
            self._acks.fail_all(TransportError(kind, f"closed with code {ws.close_code}"))

    async def _handle(self, ws: ClientConnection, raw: str) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            log.warning("websocket: not JSON: %.100s", raw)
            return
        if not isinstance(msg, dict):
            return
        kind = msg.get("type")
        if kind == "ack":
            self._acks.resolve(msg)
        elif kind == "ping":
            await ws.send(json.dumps({"type": "pong", "sent_at": msg.get("sent_at")}))
        elif kind == "error":
            log.warning("websocket error frame: %s", msg)
        else:
            self.dispatch(msg)

    async def send(self, envelopes: list[dict[str, Any]]) -> list[Ack]:
        try:
            return await self._send(envelopes)
        except TransportError as exc:
            if exc.kind != "auth":
                raise
            # 4401 mid-session: the token expired. One reconnect with a fresh one.
            await self.close()
            await self.connect()
            done = {a.get("message_id") for a in exc.acks}
            return exc.acks + await self._send(
                [e for e in envelopes if e["message_id"] not in done])

    async def _send(self, envelopes: list[dict[str, Any]]) -> list[Ack]:
        ws = self._ws
        if ws is None or not self.connected:
            raise TransportError("auth" if self.needs_reauth else "connection_lost",
                                 f"not connected (close code {self.close_code})")
        futs = {e["message_id"]: self._acks.expect(e["message_id"]) for e in envelopes}
        try:
            for env in envelopes:
                await ws.send(json.dumps(env, separators=(",", ":")))
        except ConnectionClosed:
            pass  # the reader fails the futures with the right kind
        return await self._acks.gather(futs, self.ack_timeout_s)

    async def send_frame(self, jpeg: bytes) -> None:
        if self._ws is not None and self.connected:
            try:
                await self._ws.send(jpeg)
            except ConnectionClosed:
                pass

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._own_api:
            await self.api.close()
