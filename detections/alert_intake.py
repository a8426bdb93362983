"""Committed detections, handed to alert matching in batches, off the ingest path.

`on_stored` is a post-commit consumer (transport.announce): it only appends
what matching needs of each read that could hit an active entry (plate,
candidates, device, time, passage) to a buffer, so matching reads nothing
back from the database but for the few reads that hit. While every active
entry is an exact plate, that is only the reads of listed plates
(`watchlists.prefilter`): most reads never reach the worker. A daemon thread sends the buffer to ONE Celery task
(`detections.match_reads`): at once after a quiet spell, then at most every
FLUSH_INTERVAL_S (or as soon as it holds FLUSH_MAX_IDS), so a burst of single
REST requests still makes one task per batch. In eager mode (no REDIS_URL) the task runs on that thread, never
on the request's.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from . import eager_beat

log = logging.getLogger(__name__)

# A Celery task costs a few ms of CPU to send and more to run whatever its size; at 1,000 reads/s 20 a second
# took a tenth of a core in the worker alone. An alert 200 ms later is still far inside an operator's reaction.
FLUSH_INTERVAL_S = 0.2
FLUSH_MAX_IDS = 1000
MAX_BUFFERED_IDS = 200_000  # with the broker down for long, the oldest ids are dropped (and logged)
RETRY_AFTER_S = 1.0


class Batcher:
    def __init__(self, send, interval: float = FLUSH_INTERVAL_S, max_ids: int = FLUSH_MAX_IDS):
        self._send, self.interval, self.max_ids = send, interval, max_ids
        self._ids: list[str] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._last_sent = float("-inf")

    def add(self, ids: list[str]) -> None:
        with self._cond:
            was_empty = not self._ids
            self._ids.extend(ids)
            self._bound()
            if self._thread is None or self._pid != os.getpid():  # a forked child has no thread of its own
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="lpr-alert-intake", daemon=True)
                self._thread.start()
            # Woken only when it has something to do: the first ids after a send, or a full batch. Waking it at
            # every commit (hundreds a second) only made it take the interpreter lock to go back to sleep.
            if was_empty or len(self._ids) >= self.max_ids:
                self._cond.notify()

    def _bound(self) -> None:
        """Drop the oldest ids past MAX_BUFFERED_IDS (called holding the lock)."""
        if len(self._ids) > MAX_BUFFERED_IDS:
            dropped = len(self._ids) - MAX_BUFFERED_IDS
            log.error("alert intake: broker unreachable, %d detection ids dropped from matching", dropped)
            del self._ids[:dropped]

    def depth(self) -> int:
        """Ids waiting to be handed to matching."""
        return len(self._ids)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._ids)
                deadline = self._last_sent + self.interval  # after a quiet spell ids go at once
                while len(self._ids) < self.max_ids and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                ids, self._ids = self._ids[: self.max_ids], self._ids[self.max_ids :]
            self._last_sent = time.monotonic()
            try:
                self._send(ids)
            except Exception:
                log.exception("alert intake: could not queue %d detection ids; retrying", len(ids))
                with self._cond:
                    self._ids[:0] = ids  # back in front, and the bound holds for them too
                    self._bound()
                time.sleep(RETRY_AFTER_S)


class _Watched:
    """The last `watchlists.Prefilter`, looked up again on a thread of its own at most every
    ALERT_INDEX_CHECK_S: the check scans the entries (10 ms at 100,000) and a change loads every exact plate
    (100 ms), which a write must not wait for. Until the first look, every read goes to matching."""

    def __init__(self) -> None:
        from .watchlists import EVERY_READ

        self.value = EVERY_READ
        self._due = float("-inf")
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def current(self):
        from django.conf import settings

        from . import watchlists

        if settings.ALERT_INDEX_CHECK_S <= 0:  # tests and debugging: every write sees the lists as they are
            return watchlists.prefilter()
        now = time.monotonic()
        if now >= self._due:
            self._due = now + settings.ALERT_INDEX_CHECK_S
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="lpr-watchlist-check", daemon=True)
                self._thread.start()
            self._wake.set()
        return self.value

    def _run(self) -> None:
        from django.db import connection

        from . import watchlists

        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.value = watchlists.prefilter()
            except Exception:
                log.exception("alert intake: could not look up the watchlists; handing every read to matching")
                self.value = watchlists.EVERY_READ
            finally:
                connection.close()


watched = _Watched()


def _queue_match(reads: list[list]) -> None:
    from django.db import connection

    from .alert_tasks import match_reads

    try:
        if watched.current().anything:  # the lists may have emptied since these reads were buffered
            match_reads.delay(reads)  # eager mode (no REDIS_URL): runs here, on this thread
    finally:
        connection.close()  # a long-lived thread must not hold a database session between batches


batcher = Batcher(_queue_match)


def on_stored(messages: list) -> None:
    """transport.announce consumer: newly stored detections that could hit an active entry (all of them once a
    lenient entry or a pattern is active), buffered as what matching needs of them (`alerts.StoredRead`), so
    that matching reads nothing back from the database."""
    from . import alerts

    eager_beat.ensure_started()
    could_hit = watched.current()
    if not could_hit.anything:
        return
    reads = [alerts.stored_read(m) for m in messages
             if m.envelope.data_type == "detection" and could_hit.may_hit(m.plate_normalized)]  # fmt: skip
    if reads:
        batcher.add(reads)
