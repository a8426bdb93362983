"""Micro-batching of ingest: WebSocket and Socket.IO connections, and REST requests.

Each connection queues its frames (a REST request is a connection of its own
that lives for one `submit`). While one of its writes is in flight,
new frames wait; the next write takes all of them. Writes are shared: a
writer takes the queues of every connection that has frames waiting and no
write in flight, and commits them with one `pipeline.ingest_batch` (up to
BATCH_MAX_MESSAGES). So many connections streaming thousands of messages
per second cost a few transactions per second, and each connection's
messages are still committed, and acked, in the order it sent them. Under
light load one write runs at a time; more start as the backlog grows.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable, Generic, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from transport import envelope, metrics, pipeline
from transport.pipeline import Ack, Inbound

log = logging.getLogger(__name__)

Token = TypeVar("Token")
MAX_QUEUED = 5000  # per connection; beyond this it is told to slow down instead of queueing more
# A transaction costs ~2 ms of Python whatever its size, so under light load one writer (bigger batches,
# less CPU, shorter waits) beats several; another writer joins only when this many messages wait per busy one.
MESSAGES_PER_EXTRA_WRITER = 50
CONNECTION_CHECK_S = 10.0
# Writes of fewer messages than this start at once; from this size on, REALTIME_WRITE_GAP_MS apart (_Scheduler).
GAP_AFTER_MESSAGES = 8

_writers: ThreadPoolExecutor | None = None
_thread_state = threading.local()


def _executor() -> ThreadPoolExecutor:
    global _writers
    if _writers is None:
        _writers = ThreadPoolExecutor(settings.REALTIME_DB_WRITERS, thread_name_prefix="lpr-rt-write")
    return _writers


def _ingest(items: list[Inbound]) -> list[Ack]:
    # Each writer thread keeps its database connection (CONN_MAX_AGE). Django's per-request
    # close_old_connections() would cost a health-check round trip per batch, so it runs here only
    # every few seconds and after a batch the database refused, which is enough to heal a restart.
    if getattr(_thread_state, "check_after", 0.0) <= time.monotonic():
        close_old_connections()
        _thread_state.check_after = time.monotonic() + CONNECTION_CHECK_S
    acks = pipeline.ingest_batch(items)
    if any(ack.status == pipeline.UNAVAILABLE for ack in acks):
        _thread_state.check_after = 0.0
    return acks


def stop_writers() -> None:
    """End the writer threads, and with them their database connections (tests that drop their database)."""
    global _writers
    if _writers is not None:
        _writers.shutdown(wait=True)
        _writers = None
        gc.collect()  # a thread's connection goes with its thread-local storage


async def write(items: list[Inbound]) -> list[Ack]:
    return await sync_to_async(_ingest, thread_sensitive=False, executor=_executor())(items)


class MicroBatcher(Generic[Token]):
    """One connection's queue of `(Inbound, token, queued_at)`; `deliver(tokens, acks)` is awaited after each
    commit. `queued_at`: the event loop's clock, for `lpr_realtime_wait_seconds`."""

    waiting_in_process = 0  # queued on every connection of this process, not yet taken by a writer (for /metrics)

    def __init__(self, deliver: Callable[[list[Token], list[Ack]], Awaitable[None]]) -> None:
        self.deliver = deliver
        self.queue: list[tuple[Inbound, Token, float]] = []
        self.in_flight = False
        self.idle = asyncio.Event()
        self.idle.set()

    def add(self, item: Inbound, token: Token) -> Ack | None:
        """Queue a frame; returns a `throttled` ack instead when the connection is too far ahead of storage."""
        if len(self.queue) >= MAX_QUEUED:
            detail = "Too many messages awaiting storage on this connection; resend later."
            return Ack(envelope.message_id_of(item.body), pipeline.THROTTLED, "throttled", detail, retry_after=1)
        self.queue.append((item, token, _now()))
        MicroBatcher.waiting_in_process += 1
        self.idle.clear()
        _scheduler().wake(self)
        return None

    def add_all(self, items: list[Inbound]) -> None:
        """Queue several messages as one (a REST batch): they go to the same write when they fit."""
        now = _now()
        self.queue.extend((item, None, now) for item in items)
        self.idle.clear()
        _scheduler().wake(self, len(items))

    async def drained(self) -> None:
        """Wait until everything queued is committed (its acks may no longer be deliverable)."""
        await self.idle.wait()


async def submit(items: list[Inbound]) -> list[Ack]:
    """Store `items` through the shared writers and return their acks, in order (a REST request).

    Requests that arrive while a write is in flight are committed together,
    so many single-message requests cost a few transactions, not one each.
    """
    acks: list[Ack] = []
    done = asyncio.get_running_loop().create_future()

    async def deliver(_: list[None], answered: list[Ack]) -> None:
        acks.extend(answered)
        if len(acks) == len(items) and not done.done():
            done.set_result(acks)

    MicroBatcher(deliver).add_all(items)
    return await done


class _Scheduler:
    """Hands the queues of ready connections to at most REALTIME_DB_WRITERS concurrent writes.

    A write has a cost whatever its size, so while writes carry
    GAP_AFTER_MESSAGES or more (a busy connection set) a write starts at most
    every REALTIME_WRITE_GAP_MS, collecting what arrived meanwhile, unless a
    full batch's worth is already waiting. Under lighter load (writes of a
    message or two) each one starts as soon as the writer is free: the wait
    for the gap would be most of an ack's time.
    """

    def __init__(self) -> None:
        self.ready: dict[MicroBatcher, None] = {}  # ordered: first come, first written
        self.waiting = 0  # messages queued on ready connections
        self.busy = 0
        self.tasks: set[asyncio.Task] = set()
        self.last_start = float("-inf")
        self.last_size = 0  # messages the last write took
        self.deferred: asyncio.TimerHandle | None = None

    def wake(self, conn: MicroBatcher, added: int = 1) -> None:
        if not conn.in_flight:
            self.ready[conn] = None
            self.waiting += added
        self._start_writes()

    def _start_writes(self) -> None:
        loop = asyncio.get_running_loop()
        while self.ready and self.busy < settings.REALTIME_DB_WRITERS:
            if self.busy and self.waiting < MESSAGES_PER_EXTRA_WRITER * self.busy:
                return
            start_at = self.last_start + settings.REALTIME_WRITE_GAP_MS / 1000
            if self.last_size >= GAP_AFTER_MESSAGES and self.waiting < MESSAGES_PER_EXTRA_WRITER \
                    and loop.time() < start_at:  # fmt: skip
                if self.deferred is None:
                    self.deferred = loop.call_at(start_at, self._start_deferred)
                return
            taken = self._take(settings.BATCH_MAX_MESSAGES)
            self.last_size = sum(len(part) for _, part in taken)
            self.busy += 1
            self.last_start = loop.time()
            task = loop.create_task(self._write(taken))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _start_deferred(self) -> None:
        self.deferred = None
        self._start_writes()

    def _take(self, limit: int) -> list[tuple[MicroBatcher, list]]:
        taken, room = [], limit
        while self.ready and room > 0:
            conn = next(iter(self.ready))
            del self.ready[conn]
            self.waiting -= len(conn.queue)  # what is left over waits with the connection until its write is done
            part, conn.queue = conn.queue[:room], conn.queue[room:]
            MicroBatcher.waiting_in_process -= len(part)
            conn.in_flight = True
            taken.append((conn, part))
            room -= len(part)
        now = _now()
        metrics.realtime_wait.observe_many([now - queued_at for _, part in taken for _, _, queued_at in part])
        return taken

    async def _write(self, taken: list[tuple[MicroBatcher, list]]) -> None:
        items = [item for _, part in taken for item, _, _ in part]
        try:
            acks = await write(items)
        except Exception:  # the pipeline maps storage errors itself; this is a bug, not an outage
            log.exception("ingest of %d realtime message(s) failed", len(items))
            acks = [_unavailable(item) for item in items]
        finally:
            self.busy -= 1
        start = 0
        for conn, part in taken:
            try:
                await conn.deliver([token for _, token, _ in part], acks[start : start + len(part)])
            except Exception:  # a connection that closed meanwhile must not keep the others from their acks
                log.debug("acks undeliverable on a closed connection", exc_info=True)
            start += len(part)
            conn.in_flight = False
            if conn.queue:
                self.ready[conn] = None
                self.waiting += len(conn.queue)
            else:
                conn.idle.set()
        self._start_writes()


def _now() -> float:
    return asyncio.get_running_loop().time()


_schedulers: dict[asyncio.AbstractEventLoop, _Scheduler] = {}


def _scheduler() -> _Scheduler:
    loop = asyncio.get_running_loop()
    scheduler = _schedulers.get(loop)
    if scheduler is None:
        scheduler = _schedulers[loop] = _Scheduler()
    return scheduler


def _unavailable(item: Inbound) -> Ack:
    detail = "The server could not store this message; resend later."
    return Ack(envelope.message_id_of(item.body), pipeline.UNAVAILABLE, "unavailable", detail,
               retry_after=pipeline.UNAVAILABLE_RETRY_S)


def backlog() -> int:
    """Messages queued on this process's real-time connections and waiting for a writer (for /metrics)."""
    return MicroBatcher.waiting_in_process
