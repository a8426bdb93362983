"""REST transport: ``POST /api/v1/ingest/`` (one) and ``/ingest/batch/`` (many).

Commands arrive by long poll (``GET /device/commands/?wait=N``) in a background
task; desired config and the protocol recommendation are pulled at connect and
every ``pull_interval_s``, and handed to ``on_push`` like the other transports'
pushes.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .base import Ack, DeviceIdentity, PushHandler, Transport, TransportError
from .http import ApiResponse, DeviceApi

log = logging.getLogger(__name__)
MAX_BATCH = 1000


class RestTransport(Transport):
    name = "rest"

    def __init__(
        self, device: DeviceIdentity, on_push: PushHandler | None = None, *,
        api: DeviceApi | None = None, timeout_s: float = 10.0, poll: bool = True,
        poll_wait_s: int = 25, pull_interval_s: float = 30.0,
    ) -> None:
        super().__init__(device, on_push)
        self.api = api or DeviceApi(device, timeout_s)
        self._own_api = api is None
        self.timeout_s = timeout_s
        self.poll, self.poll_wait_s, self.pull_interval_s = poll, poll_wait_s, pull_interval_s
        self._poller: asyncio.Task[None] | None = None
        self._open = False

    @property
    def connected(self) -> bool:
        return self._open

    async def connect(self) -> None:
        # REST has no connection; asking for the recommendation proves the server answers.
        await self._pull()
        self._open = True
        if self.poll:
            self._poller = asyncio.create_task(self._poll_loop())

    async def send(self, envelopes: list[dict[str, Any]]) -> list[Ack]:
        if len(envelopes) == 1:
            return [await self._send_one(envelopes[0])]
        acks: list[Ack] = []
        for i in range(0, len(envelopes), MAX_BATCH):
            acks += await self._send_batch(envelopes[i:i + MAX_BATCH])
        return acks

    async def _send_one(self, env: dict[str, Any]) -> Ack:
        resp = await self.api.request("POST", "/ingest/", json_body=env, timeout_s=self.timeout_s)
        mid = env["message_id"]
        if resp.status in (200, 201):
            status = resp.body.get("status") if isinstance(resp.body, dict) else None
            return {"message_id": mid, "status": status or ("accepted" if resp.status == 201
                                                            else "duplicate")}
        return _error_ack(mid, resp)

    async def _send_batch(self, envs: list[dict[str, Any]]) -> list[Ack]:
        resp = await self.api.request(
            "POST", "/ingest/batch/", json_body={"messages": envs}, timeout_s=self.timeout_s,
        )
        if resp.status == 200 and isinstance(resp.body, dict):
            results = [r for r in resp.body.get("results", []) if isinstance(r, dict)]
            known = {str(r.get("message_id")) for r in results}
            # An item the server did not answer for stays queued (no ack for it).
            return results + [
                {"message_id": e["message_id"], "status": "unknown"}
                for e in envs if e["message_id"] not in known
            ]
        if resp.status == 413:  # the whole batch too big: fall back to one by one
            return [await self._send_one(e) for e in envs]
        return [_error_ack(e["message_id"], resp) for e in envs]

    async def _pull(self) -> None:
        for fetch, kind in ((self.api.protocol, "protocol"), (self.api.config, "config")):
            try:
                body = await fetch()
            except TransportError as exc:
                if exc.kind != "client_error":  # a 404 here is no reason to leave REST
                    raise
                log.info("GET %s: %s", kind, exc)
                continue
            if body:
                self.dispatch({"type": kind, **body})

    async def _poll_loop(self) -> None:
        last_pull = time.monotonic()
        while self._open:
            try:
                for cmd in await self.api.commands(self.poll_wait_s):
                    self.dispatch({"type": "command", "command": cmd})
                if time.monotonic() - last_pull >= self.pull_interval_s:
                    last_pull = time.monotonic()
                    await self._pull()
            except TransportError as exc:
                log.info("command poll failed: %s", exc)
                await asyncio.sleep(min(5.0, self.poll_wait_s or 1))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("command poll crashed")
                await asyncio.sleep(5.0)

    async def ack_command(self, command_id: Any, control: dict[str, Any]) -> None:
        """The REST-only way to answer a command (the client answers with control envelopes)."""
        await self.api.ack_command(command_id, control)

    async def close(self) -> None:
        self._open = False
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        if self._own_api:
            await self.api.close()


def _error_ack(message_id: str, resp: ApiResponse) -> Ack:
    """Map an HTTP error to an ack, or raise for the failures that should switch transport."""
    body = resp.body if isinstance(resp.body, dict) else {}
    code = body.get("error") or f"http_{resp.status}"
    if resp.status == 429:
        return {"message_id": message_id, "status": "throttled",
                "retry_after": resp.retry_after()}
    if resp.status == 503 and "Retry-After" in resp.headers:
        return {"message_id": message_id, "status": "unavailable",
                "retry_after": resp.retry_after()}
    if resp.status >= 500:
        raise TransportError("server_error", f"HTTP {resp.status}: {code}")
    if resp.status == 401:
        raise TransportError("auth", f"HTTP 401: {body.get('detail', code)}")
    # 400 invalid, 403 forbidden, 413 too_large, 415: resending cannot help.
    return {"message_id": message_id, "status": "rejected", "error": code,
            "detail": body.get("detail")}
