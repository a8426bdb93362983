"""The one small interface every transport adapter implements."""
from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

log = logging.getLogger(__name__)

Ack = dict[str, Any]
# A server push, normalised to {"type": "command"|"config"|"protocol"|"ping"|"video", ...}.
Push = dict[str, Any]
PushHandler = Callable[[Push], Awaitable[None] | None]


@dataclass(frozen=True)
class DeviceIdentity:
    server_url: str
    device_id: str
    key: str
    mqtt_url: str | None = None


class TransportError(Exception):
    """A transport failed; ``kind`` drives the protocol selector.

    ``acks`` carries the acks that did arrive before the failure, so the caller
    can still settle those messages.
    """

    def __init__(self, kind: str, detail: str = "", acks: list[Ack] | None = None) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.acks = acks or []


class Transport:
    name = "base"

    def __init__(self, device: DeviceIdentity, on_push: PushHandler | None = None) -> None:
        self.device = device
        self.on_push = on_push
        self._push_tasks: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        raise NotImplementedError

    @property
    def needs_reauth(self) -> bool:
        """Closed by the server for a bad or expired token: reconnect, do not switch."""
        return False

    async def connect(self) -> None:
        raise NotImplementedError

    async def send(self, envelopes: list[dict[str, Any]]) -> list[Ack]:
        """Send envelopes; return one ack per envelope, or raise TransportError."""
        raise NotImplementedError

    async def send_frame(self, jpeg: bytes) -> None:
        """One live-video frame; transports that cannot carry video drop it."""

    async def close(self) -> None:
        raise NotImplementedError

    def dispatch(self, push: Push) -> None:
        """Hand a server push to the handler without blocking the reader."""
        if self.on_push is None:
            return
        try:
            result = self.on_push(push)
        except Exception:  # a broken handler must not kill the connection
            log.exception("push handler failed for %s", push.get("type"))
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._push_tasks.add(task)
            task.add_done_callback(self._push_done)

    def _push_done(self, task: "asyncio.Future[Any]") -> None:
        self._push_tasks.discard(task)  # type: ignore[arg-type]
        if not task.cancelled() and task.exception() is not None:
            log.error("push handler failed: %r", task.exception())


class AckWaiter:
    """Futures for acks keyed by message_id, shared by the streaming transports."""

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[Ack]] = {}

    def expect(self, message_id: str) -> "asyncio.Future[Ack]":
        fut = self._pending.get(message_id)
        if fut is None or fut.done():
            fut = asyncio.get_running_loop().create_future()
            self._pending[message_id] = fut
        return fut

    def resolve(self, ack: Ack) -> bool:
        fut = self._pending.pop(str(ack.get("message_id")), None)
        if fut is None or fut.done():
            return False
        fut.set_result(ack)
        return True

    def fail_all(self, exc: Exception) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # a send that gave up on this ack no longer awaits it: no "never retrieved"
        self._pending.clear()

    async def gather(self, futs: dict[str, "asyncio.Future[Ack]"], timeout: float) -> list[Ack]:
        """Wait for the acks ``expect`` promised; on timeout or failure raise
        TransportError carrying the acks that did arrive."""
        ids = list(futs)
        done, _ = await asyncio.wait(futs.values(), timeout=timeout)
        acks = [f.result() for f in futs.values() if f in done and f.exception() is None]
        if len(acks) == len(ids):
            return acks
        for i in ids:
            self._pending.pop(i, None)
        errors = [f.exception() for f in done if f.exception() is not None]
        if errors and isinstance(errors[0], TransportError):
            raise TransportError(errors[0].kind, errors[0].detail, acks)
        raise TransportError("timeout", f"{len(ids) - len(acks)} acks missing", acks)
