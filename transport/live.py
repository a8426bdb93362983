"""Live broadcasting: the one place that knows the event shapes and where each kind of push goes.

Operators' dashboards (`/ws/dashboard/`) receive frames
    {"type": "events", "events": [event, ...]}
at most one per FRAME_INTERVAL_S, each carrying every event committed since
the last one (the first after a quiet spell at once). An event is a dict with a "type" among EVENT_TYPES and the
fields built by the functions below. Events are only produced after commit:
`on_stored` runs from the pipeline's on-commit hook, and the other producers
(`device_status`, `alert`, `protocol_switch`, `command`) defer themselves with
`transaction.on_commit`, so a rolled-back change is never shown.

Fan-out is coalesced twice: each process buffers events and publishes
them (transport.fanout: Redis pub/sub across processes) at most once per
PUBLISH_INTERVAL_S, not once per message, and each dashboard connection
batches what it receives into one frame per FRAME_INTERVAL_S. The two are
short enough that a read reaches an operator's screen well within 50 ms of
its commit, and long enough that a thousand reads a second cost a few dozen
messages and frames, not a thousand.

Pushes to a camera (`push_to_device`) go to every live connection the device
holds, on any server process: WebSocket connections through the channel
layer group `device_group(id)`, Socket.IO connections through the Socket.IO
manager (Redis-backed when REDIS_URL is set).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from datetime import datetime
from typing import Any, Awaitable, Callable, Iterable
from uuid import UUID

import msgspec

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from devices import presence

from . import fanout, metrics
from .errors import CLOSE_CODES
from .store import Stored

log = logging.getLogger(__name__)

# Coalescing costs latency (half an interval on average, a whole one at worst, at each of the two steps) and
# saves frames; camera-to-dashboard p99 has to stay well under 50 ms.
PUBLISH_INTERVAL_S = 0.005  # per process: dashboard events published at most this often
FRAME_INTERVAL_S = 0.01  # per dashboard socket: at most one frame this often...
DASHBOARD_FRAMES_PER_S = 1000  # ...and, with many dashboards open on a process, at most this many in all
EVENTS_PER_MESSAGE = 500  # events per published message and per frame, so neither grows without bound
# Events a Pacer holds at most while its flush cannot keep up (Redis slow or away); beyond that
# the oldest are dropped and counted: a live view may miss events, the server must not grow without bound.
MAX_PENDING_EVENTS = 20_000
EVENT_TYPES = ("detection", "health", "device_status", "alert", "protocol_switch", "command")
PUSH_KINDS = ("command", "config", "protocol", "video")
PUSH_TIMEOUT_S = 5.0


def device_group(device_id: str) -> str:
    """The WebSocket connections of one camera (server → camera pushes)."""
    return f"device.{device_id}"


def video_group(device_id: str) -> str:
    """The operators watching one camera's video."""
    return f"video.{device_id}"


# --- the loop live work runs on ----------------------------------------------------------------
# In a server process that is the ASGI server's loop (bound on the first connection), because the
# in-memory channel layer and the Socket.IO server may only be used from it. Elsewhere (a worker, the
# MQTT bridge process, a test) a private daemon loop is started on first use.

_loop: asyncio.AbstractEventLoop | None = None
_loop_is_private = False
_loop_lock = threading.Lock()


def bind_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Make the server's loop the live loop (replacing a private one started before the first connection)."""
    global _loop, _loop_is_private
    if _loop is loop:
        return
    with _loop_lock:
        if _loop is None or _loop.is_closed() or _loop_is_private:
            if _loop is not None and _loop_is_private:
                _loop.call_soon_threadsafe(_loop.stop)
            _loop, _loop_is_private = loop, False


def live_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_is_private
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop, _loop_is_private = asyncio.new_event_loop(), True
            threading.Thread(target=_loop.run_forever, name="lpr-live", daemon=True).start()
        return _loop


def run_on_live_loop(coro: Awaitable[Any], timeout: float = PUSH_TIMEOUT_S) -> Any:
    """Run a coroutine on the live loop from synchronous code and wait for its result."""
    loop = live_loop()
    if _on_loop_thread(loop):
        coro.close()  # type: ignore[attr-defined]
        raise RuntimeError("called from the event loop's own thread; await the async variant instead")
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)  # type: ignore[arg-type]


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


# --- coalescing ---------------------------------------------------------------------------------


def frame_interval() -> float:
    """How often each dashboard socket of this process may get a frame: FRAME_INTERVAL_S while few are open, less
    often once they would together exceed DASHBOARD_FRAMES_PER_S (100 open: every 100 ms)."""
    return max(FRAME_INTERVAL_S, fanout.local_sinks() / DASHBOARD_FRAMES_PER_S)


class Pacer:
    """Collects items from any thread and hands them to `flush` in one call at most every `interval` s
    (a number, or a function asked before each wait).

    The first item after a quiet period goes out at once; a burst waits for the
    next slot. `flush` runs on the live loop; items added while it runs go in
    the following call, in order. At most `max_items` wait (None: no limit, the caller bounds them); past that
    the oldest are dropped.
    """

    def __init__(self, flush: Callable[[list], Awaitable[None]],
                 interval: float | Callable[[], float] = FRAME_INTERVAL_S, loop: asyncio.AbstractEventLoop | None = None,
                 max_items: int | None = MAX_PENDING_EVENTS) -> None:  # fmt: skip
        self._flush_items = flush
        self.interval = interval
        self.max_items = max_items
        self._loop = loop
        self._items: list = []
        self._lock = threading.Lock()
        self._armed_on: asyncio.AbstractEventLoop | None = None  # the loop a flush is scheduled on, if any
        self._last = float("-inf")
        self._task: asyncio.Task | None = None  # held so the flush is not garbage-collected mid-flight

    def add(self, items: Iterable) -> None:
        with self._lock:
            self._items.extend(items)
            if not self._items:
                return
            if self.max_items is not None and len(self._items) > self.max_items:
                metrics.count_dropped_live_events(len(self._items) - self.max_items)
                del self._items[: len(self._items) - self.max_items]
            loop = self._loop or live_loop()
            # Armed on another loop means a private loop the server's has replaced: it will not flush.
            if self._armed_on is loop:
                return
            self._armed_on = loop
        loop.call_soon_threadsafe(self._arm, loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        interval = self.interval() if callable(self.interval) else self.interval
        delay = max(0.0, self._last + interval - loop.time())
        loop.call_later(delay, self._start_flush, loop)

    def _start_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self._flush(loop))

    async def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            items, self._items = self._items, []
        self._last = loop.time()
        try:
            await self._flush_items(items)
        except Exception:
            log.exception("live: could not deliver %d item(s)", len(items))
        finally:
            with self._lock:
                target = (self._loop or live_loop()) if self._items else None
                self._armed_on = target
            if target is not None:
                target.call_soon_threadsafe(self._arm, target)

    def pending(self) -> int:
        """Items waiting for the next flush."""
        return len(self._items)


_encode = msgspec.json.Encoder().encode


async def send_to_dashboards(fragments: list[bytes]) -> None:
    """Publish encoded events: joined into JSON lists once per process, forwarded by each dashboard socket as
    they are."""
    for start in range(0, len(fragments), EVENTS_PER_MESSAGE):
        chunk = fragments[start : start + EVENTS_PER_MESSAGE]
        await fanout.publish(b"[" + b",".join(chunk) + b"]", len(chunk))


_dashboards = Pacer(send_to_dashboards, interval=PUBLISH_INTERVAL_S)
metrics.track_depth("live_pacer", _dashboards.pending)


def publish(events: list[dict | msgspec.Struct]) -> None:
    """Queue events for every dashboard. Call only after commit (the producers below do)."""
    if events:
        _dashboards.add([_encode(e) for e in events])


def _after_commit(event: dict) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        transaction.on_commit(lambda: publish([event]))
        return
    publish([event])  # async code (a consumer) holds no transaction


# --- event shapes -------------------------------------------------------------------------------


def on_stored(messages: list[Stored]) -> None:
    """The pipeline's post-commit consumer: detections, health reports and command answers as events."""
    events = []
    for message in messages:
        shape = _SHAPES.get(message.envelope.data_type)
        if shape is not None:
            events.append(shape(message))
    publish(events)


class DetectionEvent(msgspec.Struct, tag="detection", tag_field="type", gc=False):
    """The most frequent event by far, so a struct msgspec encodes directly rather than a dict."""

    device_id: str
    message_id: str
    sequence: int | None
    via: str
    received_at: datetime
    latency_ms: float | None
    plate: str
    plate_normalized: str
    confidence: float
    region: str | None
    direction: str | float | None
    image_ref: UUID | None
    captured_at: datetime


def _detection(m: Stored) -> DetectionEvent:
    e, p = m.envelope, m.envelope.payload
    return DetectionEvent(m.device_id, e.id_text, e.sequence, m.via, m.received_at, m.latency_ms, p.plate,
                          m.plate_normalized, p.confidence, p.region, p.direction, p.image_ref, e.timestamp)  # fmt: skip


def _health(m: Stored) -> dict:
    p, net = m.envelope.payload, m.envelope.payload.network
    return {
        **_common("health", m), "reported_at": m.envelope.timestamp.isoformat(),
        "cpu_percent": p.cpu_percent, "memory_percent": p.memory_percent, "temperature_c": p.temperature_c,
        "disk_percent": p.disk_percent, "fps": p.fps, "queue_depth": p.queue_depth, "firmware": p.firmware,
        "network": None if net is None else {
            "latency_ms": net.latency_ms, "bandwidth_kbps": net.bandwidth_kbps,
            "packet_loss": net.packet_loss, "uptime_percent": net.uptime_percent,
        },
    }  # fmt: skip


def _control(m: Stored) -> dict:
    p = m.envelope.payload
    return {"type": "command", "device_id": m.device_id, "command_id": str(p.command_id), "state": p.status,
            "transport": m.via, "error": p.error, "at": m.received_at.isoformat()}  # fmt: skip


def _common(kind: str, m: Stored) -> dict:
    return {
        "type": kind, "device_id": m.device_id, "message_id": m.envelope.id_text,
        "sequence": m.envelope.sequence, "via": m.via, "received_at": m.received_at.isoformat(),
        "latency_ms": m.latency_ms,
    }  # fmt: skip


_SHAPES: dict[str, Callable[[Stored], dict | msgspec.Struct]] = {"detection": _detection, "health": _health, "control": _control}


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def device_status(device_id: str, online: bool, transport: str = "", reason: str = "") -> None:
    """A device came online or went away (on one transport, when `transport` is given)."""
    _after_commit({"type": "device_status", "device_id": device_id, "online": online, "transport": transport,
                   "reason": reason})  # fmt: skip


def alert(device_id: str, plate: str, **fields: Any) -> None:
    """A watchlist hit; `fields` are the alert's own (id, watchlist, priority, note, detection message_id...)."""
    _after_commit({"type": "alert", "device_id": device_id, "plate": plate, **fields})


def protocol_switch(switch: Any) -> None:
    """A `devices.models.ProtocolSwitch` the server observed."""
    _after_commit({
        "type": "protocol_switch", "device_id": switch.device_id, "from": switch.from_transport,
        "to": switch.to_transport, "reason": switch.reason, "at": switch.at.isoformat(),
    })  # fmt: skip


def command(cmd: Any, transport: str = "") -> None:
    """A `devices.models.Command` changed state (issued, sent, expired...)."""
    _after_commit({"type": "command", "device_id": cmd.device_id, "command_id": str(cmd.id), "action": cmd.action,
                   "state": cmd.state, "transport": transport})  # fmt: skip


# --- pushes to cameras ---------------------------------------------------------------------------


def device_frame(kind: str, body: dict) -> dict:
    """The frame a camera receives: `{"type": kind, **body}` (CONTRACT section 4)."""
    return {**body, "type": kind}


async def apush_to_device(device_id: str, kind: str, body: dict) -> bool:
    """Send a push over every live connection the device holds; False when it holds none."""
    if kind not in PUSH_KINDS:
        raise ValueError(f"unknown push kind {kind!r}; one of {PUSH_KINDS}")
    transports = {t for t, _ in await presence.aconnections_of(device_id)}
    frame = device_frame(kind, body)
    if "websocket" in transports:
        await get_channel_layer().group_send(device_group(device_id), {"type": "device.push", "frame": frame})
    if "socketio" in transports:
        from transport.socketio import server  # the one module that imports python-socketio

        await server.emit_to_device(device_id, kind, frame)
    return bool(transports & {"websocket", "socketio"})


def push_to_device(device_id: str, kind: str, body: dict) -> bool:
    """`apush_to_device` for synchronous callers (views, tasks, `devices.commands.deliver`), from any process.

    True means the push was handed to the device's open connection(s); it is
    not a receipt. Commands are confirmed by the camera's control answer.
    """
    try:
        return run_on_live_loop(apush_to_device(device_id, kind, body))
    except (concurrent.futures.TimeoutError, OSError) as exc:
        log.warning("push %s to %s failed: %s", kind, device_id, exc)
        return False


async def arevoke(device_id: str, error: str, detail: str) -> None:
    """Close the device's open sockets on whichever server process holds them (key rotated, device deactivated)."""
    connections = await presence.aconnections_of(device_id)
    if any(transport == "websocket" for transport, _ in connections):
        await get_channel_layer().group_send(device_group(device_id), {"type": "device.revoke"})
    sids = [connection for transport, connection in connections if transport == "socketio"]
    if sids:
        from transport.socketio import server

        await server.disconnect(sids, {"error": error, "detail": detail, "close_code": CLOSE_CODES[error]})


def revoke(device_id: str, error: str, detail: str) -> None:
    """`arevoke` for synchronous callers (the admin, `devices.credentials`), from any process."""
    try:
        run_on_live_loop(arevoke(device_id, error, detail))
    except (concurrent.futures.TimeoutError, OSError) as exc:  # the sockets' own periodic check still closes them
        log.warning("closing the connections of %s failed: %s", device_id, exc)


# --- live video ---------------------------------------------------------------------------------


async def relay_frame(device_id: str, jpeg: bytes) -> None:
    await get_channel_layer().group_send(video_group(device_id), {"type": "video.frame", "frame": jpeg})


def video_control(action: str) -> dict:
    """The body of the `video` push that starts or stops a camera's stream."""
    return {"action": action, "max_fps": settings.VIDEO_MAX_FPS}
