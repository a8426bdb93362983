"""A durable outbox: every message is on disk before it is sent, until the server acks it.

SQLite in WAL mode. A message is inserted (with its ``message_id`` and
``sequence`` fixed, in the same commit that allocates the sequence) before any
transport sees it, and deleted only when an ack settles it:

* ``accepted`` / ``duplicate``: delivered, deleted.
* ``rejected``: deleted too (resending cannot help) and reported to ``on_drop``.
* ``throttled`` / ``unavailable``: kept, not due again before ``retry_after``.
* anything else (no ack, unknown status): kept, retried after a short backoff.

With ``synchronous=NORMAL`` (the default) a committed message survives the
process being killed at any point; ``synchronous="FULL"`` also survives power
loss, at the cost of an fsync per message.

Shedding policy, applied after every insert and on :meth:`shed`:

1. Messages older than ``max_age_s`` are dropped (never ``control``).
2. While the outbox holds more than ``max_messages`` or ``max_bytes``, the
   oldest message of the lowest class is dropped, classes in this order:
   ``health`` (a newer heartbeat replaces it), then ``config`` (a newer report
   supersedes it), then ``detection``. ``control`` (answers to commands) is
   never shed, even if that leaves the outbox above its bound.

Every dropped message is passed to ``on_drop(envelope, reason)``.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .envelope import Envelope, SequenceCounter

log = logging.getLogger(__name__)

# Lower sheds first; control is never shed.
SHED_CLASS = {"health": 0, "config": 1, "detection": 2, "control": 9}
NEVER_SHED = 9
SETTLED = ("accepted", "duplicate", "rejected")
RETRY_LATER = ("throttled", "unavailable")
DEFAULT_RETRY_S = 1.0

DropHandler = Callable[[Envelope, str], None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL,
    sequence INTEGER,
    data_type TEXT NOT NULL,
    shed_class INTEGER NOT NULL,
    body TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at, id);
CREATE INDEX IF NOT EXISTS outbox_shed ON outbox (shed_class, id);
CREATE INDEX IF NOT EXISTS outbox_age ON outbox (created_at);
CREATE TABLE IF NOT EXISTS edge_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class OutboxLimits:
    max_messages: int = 100_000
    max_bytes: int = 256 * 1024 * 1024
    max_age_s: float = 7 * 24 * 3600.0


class Outbox:
    def __init__(
        self,
        path: str,
        limits: OutboxLimits = OutboxLimits(),
        on_drop: DropHandler | None = None,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.limits = limits
        self.on_drop = on_drop
        self._clock = clock
        # isolation_level=None: we open transactions explicitly (BEGIN IMMEDIATE).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._sequence = SequenceCounter(self._db)
        count, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox"
        ).fetchone()
        self._count, self._bytes = int(count), int(size)
        self._last_age_check = 0.0

    # -- writing -------------------------------------------------------------
    def enqueue(self, device_id: str, build: Callable[[int], Envelope]) -> Envelope:
        """Allocate the device's next sequence, build the envelope and store it, in one commit."""
        with self._transaction():
            envelope = build(self._sequence.next(device_id))
            self._insert(envelope)
        self._enforce_bounds()
        return envelope

    def put(self, envelope: Envelope) -> bool:
        """Store an already built envelope; False if its message_id is already queued."""
        with self._transaction():
            inserted = self._insert(envelope)
        self._enforce_bounds()
        return inserted

    def _insert(self, envelope: Envelope) -> bool:
        body = json.dumps(envelope, separators=(",", ":"))
        cur = self._db.execute(
            "INSERT OR IGNORE INTO outbox (message_id, device_id, sequence, data_type,"
            " shed_class, body, size, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                envelope["message_id"], envelope["edge_device_id"], envelope.get("sequence"),
                envelope["data_type"], SHED_CLASS.get(envelope["data_type"], 0),
                body, len(body), self._clock(),
            ),
        )
        if cur.rowcount:
            self._count += 1
            self._bytes += len(body)
        return bool(cur.rowcount)

    # -- reading -------------------------------------------------------------
    def due(self, limit: int = 100, now: float | None = None) -> list[Envelope]:
        """Messages ready to be sent, oldest first."""
        rows = self._db.execute(
            "SELECT body FROM outbox WHERE next_attempt_at <= ? ORDER BY id LIMIT ?",
            (self._clock() if now is None else now, limit),
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def next_due_in(self) -> float | None:
        """Seconds until the earliest message is due (0 if one is due now), None if empty."""
        row = self._db.execute("SELECT MIN(next_attempt_at) FROM outbox").fetchone()
        return None if row[0] is None else max(0.0, row[0] - self._clock())

    def get(self, message_id: str) -> Envelope | None:
        row = self._db.execute(
            "SELECT body FROM outbox WHERE message_id = ?", (message_id,)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def message_ids(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT message_id FROM outbox ORDER BY id")]

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def counts_by_type(self) -> dict[str, int]:
        rows = self._db.execute("SELECT data_type, COUNT(*) FROM outbox GROUP BY data_type")
        return {t: n for t, n in rows}

    # -- settling ------------------------------------------------------------
    def settle(self, acks: Iterable[dict[str, Any]]) -> dict[str, int]:
        """Apply server acks; returns how many of each status were seen."""
        seen: dict[str, int] = {}
        now = self._clock()
        with self._transaction():
            for ack in acks:
                status = str(ack.get("status"))
                seen[status] = seen.get(status, 0) + 1
                self._settle_one(str(ack.get("message_id")), status, ack, now)
        return seen

    def _settle_one(self, message_id: str, status: str, ack: dict[str, Any], now: float) -> None:
        if status in SETTLED:
            row = self._delete_where("message_id = ?", (message_id,))
            if row and status == "rejected":
                log.warning("message %s rejected: %s", message_id, ack.get("error"))
                self._dropped(row, f"rejected: {ack.get('error', '')}")
            return
        delay = float(ack.get("retry_after") or DEFAULT_RETRY_S) if status in RETRY_LATER \
            else DEFAULT_RETRY_S
        self._db.execute(
            "UPDATE outbox SET next_attempt_at = ?, attempts = attempts + 1, last_status = ?"
            " WHERE message_id = ?",
            (now + delay, status, message_id),
        )

    def defer(self, message_ids: Iterable[str], delay_s: float, status: str = "failed") -> None:
        """Keep messages but do not offer them again for ``delay_s`` seconds."""
        with self._transaction():
            self._db.executemany(
                "UPDATE outbox SET next_attempt_at = ?, attempts = attempts + 1,"
                " last_status = ? WHERE message_id = ?",
                [(self._clock() + delay_s, status, m) for m in message_ids],
            )

    def retry_all_now(self) -> None:
        """Make every message due (after a transport switch, when old backoffs mean nothing)."""
        with self._transaction():
            self._db.execute(
                "UPDATE outbox SET next_attempt_at = 0 WHERE last_status IS NULL"
                " OR last_status NOT IN ('throttled', 'unavailable')"
            )

    # -- shedding ------------------------------------------------------------
    def shed(self) -> int:
        """Enforce the age and size bounds now; returns how many messages were dropped."""
        self._last_age_check = 0.0
        return self._enforce_bounds()

    def _enforce_bounds(self) -> int:
        dropped = 0
        now = self._clock()
        if now - self._last_age_check >= 1.0:
            self._last_age_check = now
            with self._transaction():
                for row in self._delete_many(
                    "created_at < ? AND shed_class < ?", (now - self.limits.max_age_s, NEVER_SHED)
                ):
                    self._dropped(row, "expired")
                    dropped += 1
        while self._count > self.limits.max_messages or self._bytes > self.limits.max_bytes:
            with self._transaction():
                row = self._delete_where(
                    "id = (SELECT id FROM outbox WHERE shed_class < ? ORDER BY shed_class, id"
                    " LIMIT 1)", (NEVER_SHED,),
                )
            if row is None:
                break  # only control answers left: they stay, above the bound
            self._dropped(row, "shed")
            dropped += 1
        return dropped

    def _delete_where(self, where: str, args: tuple[Any, ...]) -> tuple[str, int] | None:
        rows = self._delete_many(where, args)
        return rows[0] if rows else None

    def _delete_many(self, where: str, args: tuple[Any, ...]) -> list[tuple[str, int]]:
        rows = self._db.execute(
            f"DELETE FROM outbox WHERE {where} RETURNING body, size", args
        ).fetchall()
        for _, size in rows:
            self._count -= 1
            self._bytes -= size
        return rows

    def _dropped(self, row: tuple[str, int], reason: str) -> None:
        if self.on_drop is not None:
            self.on_drop(json.loads(row[0]), reason)

    # -- small key/value state (current config, seen commands) ---------------
    def get_state(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM edge_state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_state(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO edge_state (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> "_Tx":
        return _Tx(self._db)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error; nested use joins the outer one."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._outer = False

    def __enter__(self) -> None:
        self._outer = not self._db.in_transaction
        if self._outer:
            self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if not self._outer:
            return
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
