"""The storage step in one statement, for the small batches of the real-time path (PostgreSQL).

`store.write` takes six to eight round trips to PostgreSQL for a batch of a few reads, and under load each
one waits for two busy cores. A batch of detections and health reports that fits here goes instead as one
call of `lpr_ingest` (a server-side function, migration transport 0003), in autocommit: one round trip, and
its own transaction. It stores what `store.write` would: the same rows, built by the same functions, the ledger
deciding what is new, each new read joining a passage, the devices touched. What needs more (an `image_ref`
or a command to check, a configuration report, a large batch) goes through `store.write`.

Passages: the function groups reads one at a time, in capture order, which is what `passages.assign` gives
for reads arriving in separate batches. Within one batch the two can differ only when a read with a better
confidence changes a passage's best plate and a later read of the same batch is within the edit distance of
one but not the other.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime

import msgspec
from django.db import connection, transaction

from detections import passages
from lpr_server import bulk

from .store import (DETECTION_FIELDS, HEALTH_FIELDS, LEDGER_FIELDS, Item, Outcome, Stored, detection_row,
                    first_of_each_id, health_row, latency_of, ledger_row, mark_touched, read_of,
                    stale_devices)  # fmt: skip

# The function looks for each read's passage with a statement of its own, among its camera's passages in the
# window; `store.write` does it once a batch. Past about this many reads the set-wise way costs less (a camera
# with hundreds of passages open, in-process: 32 reads 3.4 against 5.4 ms, 64 the same, 99 28 against 19 ms).
MAX_MESSAGES = 50
SQL = "SELECT * FROM lpr_ingest(%b, %b, %b, %s::json, %s::json, %s::json, %s::json)"
_encode = msgspec.json.Encoder().encode


def fits(items: list[Item]) -> bool:
    return connection.vendor == "postgresql" and len(items) < MAX_MESSAGES and all(
        env.data_type == "health" or (env.data_type == "detection" and not env.payload.image_ref)
        for _, _, env in items
    )


def write(items: list[Item], received_at: datetime) -> Outcome:
    """Store `items` (they must fit) as `store.write` would, committed on return unless a transaction is open."""
    outcome = Outcome()
    keep = first_of_each_id(items, outcome)
    ledger, detections, health, stored = [], [], [], {}
    for i in keep:
        device, via, env = items[i]
        s = stored[i] = Stored(device.id, via, env, received_at, latency_of(env, received_at))
        ledger.append(_keyed(LEDGER_FIELDS, ledger_row(items[i], received_at, s.latency_ms)))
        if env.data_type == "detection":
            read = read_of(s)
            detections.append(_keyed(DETECTION_FIELDS, detection_row(s, read, None), folded=read.folded))
        else:
            health.append(_keyed(HEALTH_FIELDS, health_row(s)))
    stale = stale_devices([items[i] for i in keep], received_at)
    touches = [{"device": pk, "via": via, "firmware": firmware} for pk, (_, via, firmware) in stale.items()]
    params = [received_at, passages.window(), passages.max_distance(),
              *(_encode(rows).decode() for rows in (ledger, detections, health, touches))]  # fmt: skip
    # Inside a caller's transaction (a test's, a command's), a savepoint keeps a failure from aborting it.
    with transaction.atomic() if connection.in_atomic_block else nullcontext():
        with bulk.logged(SQL), bulk.server_cursor() as cursor:
            cursor.execute(SQL, params)
            rows = cursor.fetchall()
    fresh = {message_id: passage_id for message_id, passage_id, _ in rows if message_id is not None}
    for i in keep:
        if items[i][2].id_text in fresh:
            s = stored[i]
            s.passage_id = fresh[items[i][2].id_text]
            outcome.inserted.add(i)
            outcome.stored.append(s)
    mark_touched(stale, [device for _, _, device in rows if device is not None], received_at)
    return outcome


def _keyed(fields: list[str], row: tuple, **more) -> dict:
    """A row as the function reads it: an object keyed by field name, JSON columns as they were encoded."""
    keyed = {name: msgspec.Raw(value) if isinstance(value, bulk.JsonText) else value for name, value in zip(fields, row)}
    keyed.update(more)
    return keyed
