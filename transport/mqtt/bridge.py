"""The MQTT bridge: broker → pipeline in small batches, acknowledged to the broker only after commit.

Why nothing is lost: the bridge subscribes with manual acks on a
persistent session. A message is PUBACKed only once its batch has
committed (or it was refused for good), so until then the broker still
owns it. If the bridge dies, the broker redelivers everything unacked on
the next connection; if the database is down, the batch is retried here
with backoff, unacked, while the broker stops sending once `receive_maximum`
messages are outstanding. `message_id` makes every redelivery harmless.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass

from django.db import DatabaseError, close_old_connections
from django.db import connection as db_connection

from devices.models import Device
from devices.status import StatusError, parse_status, record_statuses
from transport import live, pipeline
from transport.envelope import encode_json, message_id_of

from . import topics
from .client import SESSION_EXPIRY_S, BrokerAddress, Connection, Received, Session
from .lookup import DeviceCache

log = logging.getLogger(__name__)

VIA = "mqtt"
RETRY_MIN_S, RETRY_MAX_S = 0.2, 5.0
STATS_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_messages: int = 500  # per batch
    max_wait_s: float = 0.005  # how long a batch waits to fill after its first message
    receive_maximum: int = 2000  # unacked messages the broker may have handed us
    lanes: int = 2  # storage threads, each with its own devices and database connection (see docs/mqtt.md)


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    detail: str


class Bridge:
    """One broker connection feeding `limits.lanes` storage lanes (two by default).

    A batch spends most of its time waiting for PostgreSQL, so with two
    lanes one writes while the other waits: more messages a second at
    saturation, but smaller batches and more transactions under moderate
    load (docs/mqtt.md has both figures). A device's messages always go to
    the same lane, so they are stored in the order they came and its
    passages are grouped by one thread.
    """

    def __init__(
        self, address: BrokerAddress, client_id: str, group: str | None = None, limits: Limits = Limits(),
        session_expiry_s: int = SESSION_EXPIRY_S,
    ) -> None:  # fmt: skip
        self.limits = limits
        session = Session(client_id, persistent=True, expiry_s=session_expiry_s,
                          receive_maximum=limits.receive_maximum, manual_ack=True)  # fmt: skip
        self.connection = Connection(
            address, session, [topics.uplink_subscription(group), topics.STATUS], on_message=self._route,
            backlog=self.backlog, max_backlog=limits.receive_maximum,  # stops reading, not growing, when storage lags
        )
        self.lanes = [_Lane(n, self.connection, limits) for n in range(max(1, limits.lanes))]
        self._stats_at, self._stats_handled = time.monotonic(), 0

    @property
    def handled(self) -> int:
        return sum(lane.handled for lane in self.lanes)

    def backlog(self) -> int:
        """Messages received and not yet taken by a lane."""
        return sum(lane.inbox.qsize() for lane in self.lanes)

    def _route(self, r: Received) -> None:
        # lpr/v1/devices/<id>/...: the device id picks the lane; anything else is refused by lane 0
        parts = r.topic.split("/", 4)
        lane = hash(parts[3]) % len(self.lanes) if len(parts) > 3 else 0
        self.lanes[lane].inbox.put(r)

    def run(self, stop: threading.Event) -> None:
        """Bridge until `stop` is set; each lane finishes its batch in flight (or leaves it unacked if storage is
        down). Every lane runs on a thread of its own; this one only waits for `stop`, and logs the rate."""
        self.connection.start()
        lanes = [threading.Thread(target=self._run_lane, args=(lane, stop), name=f"lpr-mqtt-lane-{lane.number}",
                                  daemon=True) for lane in self.lanes]  # fmt: skip
        try:
            for thread in lanes:
                thread.start()
            while not stop.wait(STATS_EVERY_S):
                self._log_stats()
        finally:
            stop.set()
            for thread in lanes:
                thread.join()
            self.connection.stop()

    @staticmethod
    def _run_lane(lane: _Lane, stop: threading.Event) -> None:
        # Signals are for the thread that waits on `stop`. In a lane, one could end a wait for messages with
        # nothing left of its timeout, and CPython 3.11's SimpleQueue.get then waits forever.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            lane.run(stop)
        finally:
            stop.set()  # a lane that failed stops the others, and the bridge

    def _log_stats(self) -> None:
        now = time.monotonic()
        if now - self._stats_at >= STATS_EVERY_S:
            handled = self.handled
            rate = (handled - self._stats_handled) / (now - self._stats_at)
            if rate:
                log.info("mqtt bridge: %.0f messages/s settled, %d in all", rate, handled)
            self._stats_at, self._stats_handled = now, handled


class _Lane:
    """Takes its share of the messages in batches, stores or refuses them, and acks what is settled."""

    def __init__(self, number: int, connection: Connection, limits: Limits) -> None:
        self.number, self.connection, self.limits = number, connection, limits
        self.inbox: queue.SimpleQueue[Received] = queue.SimpleQueue()
        self.devices = DeviceCache()
        self.handled = 0
        self._db_checked_at = 0.0

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                batch = self._collect()
                if batch:
                    self._handle(batch, stop)
        finally:
            db_connection.close()  # this thread's connection, back to the pool

    def _collect(self) -> list[Received]:
        try:
            batch = [self.inbox.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.limits.max_wait_s
        while len(batch) < self.limits.max_messages:
            try:
                batch.append(self.inbox.get_nowait())
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self.inbox.get(timeout=remaining))
                except queue.Empty:
                    break
        return batch

    def _handle(self, batch: list[Received], stop: threading.Event) -> None:
        pending, delay = batch, RETRY_MIN_S
        while True:
            self._refresh_db_connection(force=pending is not batch)
            pending = self._process_safely(pending)
            if not pending:
                return
            if stop.is_set():
                log.warning("stopping with %d message(s) unstored and unacked; the broker keeps them", len(pending))
                return
            log.warning("storage unavailable; retrying %d message(s) in %.1f s", len(pending), delay)
            stop.wait(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _process_safely(self, batch: list[Received]) -> list[Received]:
        """`_process`, but a message that breaks it (a bug, not bad input) is refused alone, never retried forever."""
        try:
            return self._process(batch)
        except Exception:
            if len(batch) == 1:
                log.exception("could not handle the MQTT message on %s; refusing it", batch[0].topic)
                self._refuse(batch[0], None, Refusal("invalid", "the server could not handle this message"))
                self.connection.ack(batch[0])
                return []
            log.exception("a batch of %d MQTT messages failed; handling them one by one", len(batch))
            return [r for one in batch for r in self._process_safely([one])]

    def _refresh_db_connection(self, force: bool) -> None:
        # A long-running process never passes through Django's request cycle, which is what normally
        # drops a broken or over-age database connection. Do it here: after storage failed (so the retry
        # gets a fresh connection instead of the dead one) and at most once a second otherwise.
        now = time.monotonic()
        if force or now - self._db_checked_at >= 1.0:
            close_old_connections()
            self._db_checked_at = now

    def _process(self, batch: list[Received]) -> list[Received]:
        """Store or refuse each message, ack what is settled; return those to retry (storage down)."""
        parsed = [(r, topics.parse(r.topic)) for r in batch]
        try:
            devices = self.devices.get_many(t.device_id for _, t in parsed if t)
        except pipeline.STORAGE_DOWN:
            return batch
        ups: list[tuple[Received, pipeline.Inbound]] = []
        statuses: dict[str, str] = {}
        status_messages: list[Received] = []
        settled: list[Received] = []
        for r, t in parsed:
            device = devices.get(t.device_id) if t else None
            refusal = _refusal(t, device)
            if t is not None and t.kind == "status" and not r.payload:
                settled.append(r)  # a retained status being cleared: nothing to record
                continue
            if refusal is None and t.kind == "status":
                try:
                    statuses[device.id] = parse_status(r.payload)
                    status_messages.append(r)
                    continue
                except StatusError as exc:
                    refusal = Refusal("invalid", str(exc))
            if refusal is not None:
                self._refuse(r, device, refusal, answer=t is not None and t.kind == "up")
                settled.append(r)
            else:
                ups.append((r, pipeline.Inbound(r.payload, device, VIA, t.data_type)))
        retry = self._ingest(ups, settled)
        retry += self._record_statuses(statuses, status_messages, settled)
        for r in settled:
            self.connection.ack(r)
        self.handled += len(settled)
        return retry

    def _ingest(self, ups: list[tuple[Received, pipeline.Inbound]], settled: list[Received]) -> list[Received]:
        if not ups:
            return []
        retry = []
        acks = pipeline.ingest_batch([item for _, item in ups])
        for (r, item), ack in zip(ups, acks):
            if ack.status == pipeline.UNAVAILABLE:
                retry.append(r)
                continue
            self.connection.send(topics.down(item.device.id, "ack"), encode_json(ack.as_dict()))
            settled.append(r)
        return retry

    def _record_statuses(self, statuses: dict[str, str], messages: list[Received], settled: list[Received]) -> list[Received]:
        if not statuses:
            return []
        try:
            changed = record_statuses(statuses)
        except pipeline.STORAGE_DOWN:
            return messages
        except DatabaseError:
            log.exception("could not record MQTT status; dropping %d status message(s)", len(messages))
            changed = []
        for device_id in changed:
            live.device_status(device_id, statuses[device_id] == "online", VIA, "MQTT status topic")
        settled.extend(messages)
        return []

    def _refuse(self, r: Received, device: Device | None, refusal: Refusal, answer: bool = True) -> None:
        """Record why a message was refused and, for an envelope from a known device, answer `rejected`."""
        log.info("refused MQTT message on %s: %s", r.topic, refusal.detail)
        pipeline.record_refusal(VIA, refusal.code, f"{refusal.detail} (topic {r.topic})", r.payload, device)
        if device is not None and answer:
            ack = pipeline.Ack(message_id_of(r.payload), pipeline.REJECTED, refusal.code, refusal.detail)
            self.connection.publish(topics.down(device.id, "ack"), encode_json(ack.as_dict()))


def _refusal(t: topics.Topic | None, device: Device | None) -> Refusal | None:
    if t is None:
        return Refusal("invalid", "not a device topic: lpr/v1/devices/<id>/up/<data_type> or lpr/v1/devices/<id>/status")
    if device is None:
        return Refusal("unauthenticated", f"unknown device {t.device_id!r}")
    if not device.active:
        return Refusal("forbidden", f"device {device.id} is deactivated")
    return None
