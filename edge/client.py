"""EdgeClient: one camera. Messages go to the outbox first, then out over the selected transport."""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any, Awaitable, Callable

from .commands import CommandRunner
from .envelope import Envelope, build_envelope
from .outbox import Outbox, OutboxLimits
from .selector import ProtocolSelector, Switch
from .transports import DeviceApi, DeviceIdentity, Push, Transport, TransportError, make_transport

log = logging.getLogger(__name__)

EventHandler = Callable[[str, dict[str, Any]], None]
Handler = Callable[[dict[str, Any]], Any]


class EdgeClient:
    """A camera's connection to the server.

    ``protocol`` is ``"auto"`` (selector picks among ``realtime``/rest/mqtt) or
    one fixed transport name. ``on_event(kind, data)`` sees ``produced``
    (envelope), ``ack``, ``dropped``, ``switch`` and ``command`` events.
    """

    def __init__(
        self, server_url: str, device_id: str, key: str, payload_key: str | None = None, *,
        mqtt_url: str | None = None, outbox_path: str | None = None, protocol: str = "auto",
        realtime: str = "websocket", compression: bool = False, encrypt: bool | None = None,
        batch_size: int = 100, outbox_limits: OutboxLimits = OutboxLimits(),
        on_command: Handler | None = None, on_config: Handler | None = None,
        on_video: Handler | None = None, on_event: EventHandler | None = None,
        selector: ProtocolSelector | None = None, evaluate_interval_s: float = 5.0,
        probe_interval_s: float = 15.0, health_interval_s: float | None = None,
        transport_options: dict[str, dict[str, Any]] | None = None, sign_requests: bool = False,
    ) -> None:
        self.device = DeviceIdentity(server_url, device_id, key, mqtt_url)
        self.device_id, self.payload_key = device_id, payload_key
        self.compression = compression
        self.encrypt = bool(payload_key) if encrypt is None else encrypt
        self.batch_size = batch_size
        self.on_event, self.on_video = on_event, on_video
        self.outbox = Outbox(outbox_path or f"edge-{device_id}.outbox.sqlite", outbox_limits,
                             on_drop=self._dropped)
        fixed = None if protocol == "auto" else protocol
        self.selector = selector or ProtocolSelector(
            top=realtime if fixed not in ("websocket", "socketio") else fixed, fixed=fixed)
        self.api = DeviceApi(self.device, sign=sign_requests)
        self.commands = CommandRunner(self, on_command, on_config)
        self.evaluate_interval_s, self.probe_interval_s = evaluate_interval_s, probe_interval_s
        self.health_interval_s = health_interval_s
        self.transport_options = transport_options or {}
        self.counters = {k: 0 for k in ("produced", "sent", "acked", "duplicate", "rejected",
                                        "throttled", "dropped", "failures")}
        self._transport: Transport | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._stopping = False
        self._opened_at = 0.0
        self._last_eval = self._last_probe = self._last_health = time.monotonic()

    # -- public API ------------------------------------------------------------
    @property
    def transport(self) -> str:
        """The level the selector is on: websocket, socketio, rest, mqtt or offline."""
        return self.selector.current

    @property
    def config(self) -> dict[str, Any]:
        return self.commands.config

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "queued": len(self.outbox), "transport": self.transport}

    async def start(self) -> None:
        self.commands.report_config()
        self._task = asyncio.create_task(self._run(), name=f"edge-{self.device_id}")

    async def stop(self, drain_timeout_s: float = 0.0) -> None:
        """Stop; with ``drain_timeout_s`` first wait that long for the outbox to empty."""
        if drain_timeout_s > 0:
            await self.flush(drain_timeout_s)
        self._stopping = True
        self._wake.set()
        for task in (self._task, self._probe):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self._close_transport()
        await self.api.close()
        self.outbox.close()

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every queued message is acked; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while len(self.outbox) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return not len(self.outbox)

    async def send_detection(self, plate: str, confidence: float, **fields: Any) -> str:
        payload = {"plate": plate, "confidence": confidence}
        payload.update({k: v for k, v in fields.items() if v is not None})
        return self.enqueue("detection", payload)

    async def send_health(self, **fields: Any) -> str:
        return self.enqueue("health", self.health_payload(**fields))

    async def send_config(self, version: int | None = None,
                          values: dict[str, Any] | None = None) -> str:
        """Report the running config (by default the one the client keeps)."""
        if version is not None or values is not None:
            self.commands.set_config(values or {}, version, report=False)
        return self.enqueue("config", dict(self.commands.config))

    async def send_control(self, command_id: Any, status: str, result: Any = None,
                           error: str | None = None) -> str:
        return self.commands.answer(command_id, status, result, error)

    async def upload_image(self, data: bytes, content_type: str = "image/jpeg") -> str:
        """Upload a picture over REST (whatever the current transport) and return its
        ``image_ref`` for ``send_detection(..., image_ref=...)``. Images are not queued in
        the outbox: on failure this raises TransportError and the caller decides."""
        return await self.api.upload_image(data, content_type)

    async def send_frame(self, jpeg: bytes) -> None:
        if self._transport is not None and self._transport.connected:
            await self._transport.send_frame(jpeg)

    # -- producing ---------------------------------------------------------------
    def enqueue(self, data_type: str, payload: dict[str, Any]) -> str:
        """Build the envelope (sequence, id, time fixed now) and store it in the outbox."""
        protocol = self.transport if self.transport != "offline" else "mqtt"
        env = self.outbox.enqueue(self.device_id, lambda seq: build_envelope(
            device_id=self.device_id, data_type=data_type, payload=payload, protocol=protocol,
            sequence=seq, compression=self.compression,
            payload_key=self.payload_key if self.encrypt else None,
        ))
        self.counters["produced"] += 1
        self._emit("produced", env)
        self._wake.set()
        return str(env["message_id"])

    def health_payload(self, **fields: Any) -> dict[str, Any]:
        reported = fields.get("network") or {}
        self.selector.stats.reported.update(
            {k: float(v) for k, v in reported.items() if isinstance(v, (int, float))})
        payload = {"queue_depth": len(self.outbox), **fields}
        payload["network"] = {**self.selector.stats.network(), **reported}
        payload["transport"] = self.transport
        switches = self.selector.pop_unreported()
        if switches:
            payload["protocol_switches"] = switches
        return payload

    # -- the loop ------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: delivery loop error", self.device_id)
                await self._sleep(1.0)

    async def _tick(self) -> None:
        self._housekeeping()
        level = self.selector.current
        if level == "offline":
            await self._close_transport()
            await self._sleep(0.5)
            return
        t = self._transport
        if t is not None and t.name == level and not t.connected:
            if t.needs_reauth and time.monotonic() - self._opened_at > 5.0:
                await self._open(level)  # token expired: fresh token, same transport
            else:
                await self._failed("auth" if t.needs_reauth else "connection_lost")
            return
        if t is None or t.name != level:
            await self._open(level)
            return
        batch = self.outbox.due(self.batch_size)
        if not batch:
            due_in = self.outbox.next_due_in()
            await self._sleep(0.5 if due_in is None else min(0.5, max(0.01, due_in)))
            return
        await self._deliver(t, batch)

    async def _open(self, level: str) -> None:
        await self._close_transport()
        transport = make_transport(level, self.device, self._on_push, api=self.api,
                                   **self.transport_options.get(level, {}))
        try:
            await transport.connect()
        except TransportError as exc:
            log.info("%s: %s connect failed: %s", self.device_id, level, exc)
            await _quietly(transport.close())
            await self._failed(exc.kind)
            return
        self._transport = transport
        self._opened_at = time.monotonic()
        self.selector.mark_connected()

    async def _deliver(self, transport: Transport, batch: list[Envelope]) -> None:
        started = time.monotonic()
        self.counters["sent"] += len(batch)
        try:
            acks = await transport.send(batch)
        except TransportError as exc:
            log.info("%s: %s send failed: %s", self.device_id, transport.name, exc)
            self._settle(exc.acks)
            await self._failed(exc.kind)
            return
        self._settle(acks)
        # A big batch (draining a backlog) times the server's work more than the link.
        rtt = (time.monotonic() - started) * 1000 if len(batch) <= 10 else None
        self._switched(self.selector.record_send(True, rtt))

    def _settle(self, acks: list[dict[str, Any]]) -> None:
        if not acks:
            return
        for status, n in self.outbox.settle(acks).items():
            key = "acked" if status == "accepted" else status
            if key in self.counters:
                self.counters[key] += n
        for ack in acks:
            self._emit("ack", ack)

    async def _failed(self, kind: str) -> None:
        self.counters["failures"] += 1
        switch = self.selector.on_failure(kind)
        await self._close_transport()
        self._switched(switch)

    def _switched(self, switch: Switch | None) -> None:
        if switch is None:
            return
        log.warning("%s: %s -> %s (%s)", self.device_id, switch.from_, switch.to, switch.reason)
        self._emit("switch", switch.as_dict())
        # Reported to the server as a health message carrying "protocol_switches".
        self.enqueue("health", self.health_payload())

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_eval >= self.evaluate_interval_s:
            self._last_eval = now
            connected = self._transport is not None and self._transport.connected
            self._switched(self.selector.evaluate(connected))
            self.outbox.shed()
        probe_due = now - self._last_probe >= self.probe_interval_s
        if probe_due and self.transport != self.selector.levels[0] and (
                self._probe is None or self._probe.done()):
            self._last_probe = now
            self._probe = asyncio.create_task(self._probe_server())
        if self.health_interval_s and now - self._last_health >= self.health_interval_s:
            self._last_health = now
            self.enqueue("health", self.health_payload())

    async def _probe_server(self) -> None:
        """Below the top level: ask REST for the recommendation and time the answer."""
        started = time.monotonic()
        try:
            body = await self.api.protocol()
        except TransportError:
            self.selector.stats.record_send(False, None)
            return
        self.selector.stats.record_send(True, (time.monotonic() - started) * 1000)
        self.selector.on_recommendation(body.get("recommended"), body.get("score"))

    async def _on_push(self, push: Push) -> None:
        kind = push.get("type")
        if kind == "command":
            await self.commands.handle(push.get("command") or {})
        elif kind == "config":
            self.commands.apply_desired(push)
        elif kind == "protocol":
            self.selector.on_recommendation(push.get("recommended"), push.get("score"))
        elif kind == "video" and self.on_video is not None:
            await _maybe_await(self.on_video(push))

    async def _close_transport(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            await _quietly(transport.close())

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        self._wake.clear()

    def _dropped(self, envelope: Envelope, reason: str) -> None:
        self.counters["dropped"] += 1
        self._emit("dropped", {"message_id": envelope["message_id"], "reason": reason,
                               "data_type": envelope["data_type"]})

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, data)
            except Exception:
                log.exception("on_event handler failed")


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _quietly(aw: Awaitable[Any]) -> None:
    try:
        await aw
    except Exception:  # closing a broken connection may fail; it is going away anyway
        log.debug("close failed", exc_info=True)
