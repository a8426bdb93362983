"""Grouping reads into passages: one vehicle passing one camera.

A read joins a passage of the same device when its plate folds to the
passage's best plate or is within PASSAGE_MAX_DISTANCE edits of it, and it
was captured within PASSAGE_WINDOW_S of the passage's first or last read.

`assign` runs inside the ingest transaction, once per batch (from
transport.store), so a passage id exists when the post-commit consumers
(alerts: one per passage) see the detection. It costs at most three
queries per batch, whatever its size: open passages, new ones, extended ones.
Extensions are written as increments in SQL, so two batches extending the
same passage at once both count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable
from uuid import UUID

import msgspec
from django.conf import settings
from django.db import connection
from django.db.models import Q

from lpr_server import bulk

from .models import Passage
from .plates import fold_normalized, near


class Read(msgspec.Struct, gc=False):
    device_id: str
    plate_normalized: str
    confidence: float
    captured_at: datetime
    message_id: UUID | str
    folded: str = ""  # fold(plate_normalized), filled in by `assign` when the caller has not

    def __post_init__(self) -> None:
        if not self.folded:
            self.folded = fold_normalized(self.plate_normalized)


@dataclass(slots=True)
class _Open:
    """A passage as grouping sees it, with what this batch adds to it."""

    id: int | None
    device_id: str
    folded: str
    first_at: datetime
    last_at: datetime
    best: Read | None = None  # the best read this batch adds; SQL decides whether it beats the stored best
    added: int = 0
    first_added: datetime | None = None
    last_added: datetime | None = None
    reads: list[int] = field(default_factory=list)

    def in_time(self, read: Read, window: timedelta) -> bool:
        return self.first_at - window <= read.captured_at <= self.last_at + window

    def add(self, index: int, read: Read) -> None:
        at = read.captured_at
        self.reads.append(index)
        self.added += 1
        if at < self.first_at:
            self.first_at = at
        elif at > self.last_at:
            self.last_at = at
        if self.first_added is None:
            self.first_added = self.last_added = at
        elif at < self.first_added:
            self.first_added = at
        elif at > self.last_added:
            self.last_added = at
        if self.best is None or read.confidence > self.best.confidence:
            self.best = read


class _Index:
    """Open passages by device and plate, so a read is compared only with passages it may belong to.

    A read first looks for passages with its very folded plate (a car read
    again: the common case). Only when none is in time does it look for one
    within the edit distance, through deletion neighbourhoods: two words
    within k edits share a word made by deleting at most k characters from
    each, so passages are filed under those and a read finds a small superset,
    checked with `near`.
    """

    def __init__(self, max_distance: int, window: timedelta):
        self.max_distance, self.window = max_distance, window
        self.all: list[_Open] = []
        self._same: dict[tuple[str, str], list[_Open]] = {}
        self._by_device: dict[str, dict[str, list[_Open]]] = {}
        self._deletions: dict[str, set[str]] = {}  # a plate is filed, looked up and sent to SQL: made once a batch

    def add(self, p: _Open) -> _Open:
        self.all.append(p)
        self._same.setdefault((p.device_id, p.folded), []).append(p)
        if self.max_distance:
            by_key = self._by_device.setdefault(p.device_id, {})
            for key in self.deletions(p.folded):
                by_key.setdefault(key, []).append(p)
        return p

    def find(self, read: Read) -> _Open | None:
        """The passage `read` belongs to: in time, same plate preferred, then the nearest in time."""
        fits = [p for p in self._same.get((read.device_id, read.folded), ()) if p.in_time(read, self.window)]
        if not fits and self.max_distance:
            fits = [p for p in self._near(read.device_id, read.folded) if p.in_time(read, self.window)]
        if len(fits) < 2:
            return fits[0] if fits else None
        return min(fits, key=lambda p: _gap(p, read.captured_at))

    def _near(self, device_id: str, folded: str) -> list[_Open]:
        by_key = self._by_device.get(device_id)
        if not by_key:
            return []
        found: dict[int, _Open] = {}
        for key in self.deletions(folded):
            for p in by_key.get(key, ()):
                found[id(p)] = p
        return [p for p in found.values() if near(folded, p.folded, self.max_distance)]

    def deletions(self, folded: str) -> set[str]:
        keys = self._deletions.get(folded)
        if keys is None:
            keys = self._deletions[folded] = deletions(folded, self.max_distance)
        return keys


def deletions(word: str, k: int) -> set[str]:
    """`word` and every string made by deleting up to k of its characters."""
    keys, frontier = {word}, {word}
    for _ in range(k):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        keys |= frontier
    return keys


def _one_edit(word: str) -> set[str]:
    return deletions(word, 1)


def window() -> timedelta:
    return timedelta(seconds=getattr(settings, "PASSAGE_WINDOW_S", 5.0))


def max_distance() -> int:
    return getattr(settings, "PASSAGE_MAX_DISTANCE", 1)


def assign(reads: list[Read]) -> list[int]:
    """The passage id of each read, creating and extending passages as needed."""
    if not reads:
        return []
    index = _Index(max_distance(), window())
    for p in _open_passages(reads, index):
        index.add(p)
    for i in sorted(range(len(reads)), key=lambda i: reads[i].captured_at):
        read = reads[i]
        target = index.find(read) or index.add(_Open(None, read.device_id, read.folded, read.captured_at, read.captured_at))
        target.add(i, read)
    touched = [p for p in index.all if p.added]
    new, extended = [p for p in touched if p.id is None], [p for p in touched if p.id is not None]
    _create(new)  # gives the new passages their ids
    _extend(extended)
    ids = [0] * len(reads)
    for p in touched:
        for i in p.reads:
            ids[i] = p.id
    return ids


def _gap(p: _Open, at: datetime) -> float:
    return 0.0 if p.first_at <= at <= p.last_at else min(abs((at - p.first_at).total_seconds()), abs((at - p.last_at).total_seconds()))


def _open_passages(reads: list[Read], index: _Index) -> list[_Open]:
    """Stored passages a read of the batch may join: of its device, near it in time and (on PostgreSQL)
    within the edit distance of one of the batch's plates for that device (one indexed query)."""
    span: dict[str, list] = {}
    for r in reads:
        low, high, words = span.setdefault(r.device_id, [r.captured_at, r.captured_at, set()])
        span[r.device_id][:2] = min(low, r.captured_at), max(high, r.captured_at)
        words.add(r.folded)
    win = index.window
    if connection.vendor == "postgresql":
        return _open_passages_near(span, win, index.deletions)
    where = Q()
    for device_id, (low, high, _) in span.items():
        where |= Q(device_id=device_id, last_at__gte=low - win, first_at__lte=high + win)
    rows = Passage.objects.filter(where).values_list("id", "device_id", "plate_folded", "first_at", "last_at")
    return [_Open(*row) for row in rows]


def _open_passages_near(span: dict[str, list], win: timedelta, deletions_of: Callable[[str], set[str]] = _one_edit,
                        ) -> list[_Open]:  # fmt: skip
    with bulk.server_cursor() as cursor:  # parameters bound by the server, the statement prepared once reused
        cursor.execute(*open_passages_query(span, win, deletions_of))
        return [_Open(*row) for row in cursor.fetchall()]


def open_passages_query(span: dict[str, list], win: timedelta, deletions_of: Callable[[str], set[str]] = _one_edit,
                        ) -> tuple[str, list]:  # fmt: skip
    """PostgreSQL: the statement and parameters finding the passages each device's reads may join
    (`deletions_of`: a plate's deletion neighbourhood for one edit)."""
    # A busy camera has thousands of passages open at once; comparing plates here (in C) sends back only the
    # few a read may join. LATERAL, kept from being joined plainly by its OFFSET 0: one (device, last_at) index
    # range per device (joined plainly, the planner cannot tell how many devices the arrays hold and reads the
    # whole table). The other OFFSET 0 makes each device's plates an array once, not once per stored passage.
    # Each stored plate is tested through hash tables built once a statement (uncorrelated IN), cheapest first:
    # the very plate (a car read again, the common case); else, for one edit, a shared head or tail (`affixes`)
    # and a shared deletion neighbour (two plates one edit apart share a plate made by deleting at most one
    # character from each); only then the edit distance to each of the device's plates. The sets are the whole
    # batch's, so a device may get back a passage with another device's plate: grouping ignores it.
    # Comparing every stored plate with every plate of the batch took 30 ms for 1,000 reads beside 4,000 open
    # passages; this takes 2. Sets of plates travel as one string each (folded plates hold no spaces; %b:
    # binary parameters, psycopg quotes text-format arrays with regular expressions).
    k = max_distance()
    table = connection.ops.quote_name(Passage._meta.db_table)
    words = set().union(*(span[d][2] for d in span))
    n, heads, m, tails = affixes(words, k)
    fuzzy = {0: "FALSE", 1: _ONE_EDIT}.get(k, _WITHIN_K)
    sql = (
        "SELECT p.id, p.device_id, p.plate_folded, p.first_at, p.last_at FROM ("
        "SELECT device_id, low, high, string_to_array(words, ' ') AS words FROM unnest(%b::text[], "
        "%b::timestamptz[], %b::timestamptz[], %b::text[]) AS u(device_id, low, high, words) OFFSET 0) r "
        f"CROSS JOIN LATERAL (SELECT * FROM {table} p WHERE p.device_id = r.device_id AND p.last_at >= r.low "
        "AND p.first_at <= r.high AND (p.plate_folded IN (SELECT unnest(string_to_array(%b, ' '))) "
        f"OR {fuzzy}) OFFSET 0) p"
    )
    devices = list(span)
    params = [devices, [span[d][0] - win for d in devices], [span[d][1] + win for d in devices],
              [" ".join(span[d][2]) for d in devices], " ".join(words)]  # fmt: skip
    if k == 1:
        params += [n, n, heads, m, tails, " ".join(set().union(*map(deletions_of, words)))]
    if k:
        params += [k, k]
    return sql, params


_WITHIN_K = "EXISTS (SELECT 1 FROM unnest(r.words) w WHERE levenshtein_less_equal(p.plate_folded, w, %b) <= %b)"
_ONE_EDIT = (
    "((%b = 0 OR left(p.plate_folded, %b) IN (SELECT unnest(string_to_array(%b, ' '))) "
    "OR right(p.plate_folded, %b) IN (SELECT unnest(string_to_array(%b, ' ')))) "
    # the stored plate and each plate made by deleting one of its characters (position length + 1: none)
    # (IN in the select list, not in a WHERE: PostgreSQL would make it a join, not one hash table, in custom plans)
    "AND (SELECT bool_or(overlay(p.plate_folded placing '' from i for 1) IN (SELECT unnest(string_to_array(%b, ' ')))) "
    "FROM generate_series(1, length(p.plate_folded) + 1) i) "
    f"AND {_WITHIN_K})"
)


def affixes(words: set[str], k: int) -> tuple[int, str, int, str]:
    """A cheap test that every plate within `k` edits of one of `words` passes: (n, heads, m, tails) such that such
    a plate starts with one of the heads (each word's first n characters) or ends with one of the tails (the last m).

    For one edit: the characters before it stay where they were, those after it stay at the end. An edit at
    position i (from 1) keeps the first i - 1 and the last len(w) - i; with n <= len(w) // 2 and
    m < len(w) - n, one of the two is long enough. (0, "", 0, ""): no test (more edits, or too short a word).
    """
    if k != 1 or not words:
        return 0, "", 0, ""
    n = min(len(w) for w in words) // 2
    m = min((len(w) + 1) // 2 - 1 for w in words)
    if n == 0 or m == 0:
        return 0, "", 0, ""
    return n, " ".join(sorted({w[:n] for w in words})), m, " ".join(sorted({w[-m:] for w in words}))


PASSAGE_FIELDS = ["device", "plate_normalized", "plate_folded", "best_message_id", "best_confidence",
                  "first_at", "last_at", "read_count"]  # fmt: skip


def _create(new: list[_Open]) -> None:
    if not new:
        return
    if connection.vendor != "postgresql":
        objs = [Passage(**dict(zip(["device_id", *PASSAGE_FIELDS[1:]], _row(p)))) for p in new]
        Passage.objects.bulk_create(objs)  # SQLite >= 3.35 returns the new ids
        for p, obj in zip(new, objs):
            p.id = obj.id
        return
    for p, passage_id in zip(new, bulk.insert_with_ids(Passage, PASSAGE_FIELDS, [_row(p) for p in new])):
        p.id = passage_id


def _row(p: _Open) -> tuple:
    best = p.best
    return (p.device_id, best.plate_normalized, best.folded, best.message_id, best.confidence, p.first_at, p.last_at,
            p.added)  # fmt: skip


def _extend(extended: list[_Open]) -> None:
    """One UPDATE for every extended passage: counts added, times widened, best read replaced if beaten."""
    if not extended:
        return
    columns = [
        [p.id for p in extended], [p.added for p in extended], [_dt(p.first_added) for p in extended],
        [_dt(p.last_added) for p in extended], [_uuid(p.best.message_id) for p in extended],
        [p.best.confidence for p in extended], [p.best.plate_normalized for p in extended],
        [p.best.folded for p in extended],
    ]  # fmt: skip
    table = connection.ops.quote_name(Passage._meta.db_table)
    if connection.vendor == "postgresql":
        # Eight array parameters, whatever the batch size: cheap to send and to plan.
        types = ["bigint", "integer", "timestamptz", "timestamptz", "uuid", "double precision", "text", "text"]
        source, params = "SELECT * FROM unnest(" + ", ".join(f"%b::{t}[]" for t in types) + ")", columns
        least, greatest = "LEAST", "GREATEST"
        open_cursor = bulk.server_cursor  # arrays bound by the server, the statement prepared once
    else:
        source = "VALUES " + ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(extended))
        params, least, greatest = [value for row in zip(*columns) for value in row], "MIN", "MAX"
        open_cursor = connection.cursor
    better = "v.conf > t.best_confidence"
    sql = (
        f"WITH v(id, n, first_at, last_at, mid, conf, plate, folded) AS ({source}) "
        f"UPDATE {table} AS t SET read_count = t.read_count + v.n, "
        f"first_at = {least}(t.first_at, v.first_at), last_at = {greatest}(t.last_at, v.last_at), "
        f"best_message_id = CASE WHEN {better} THEN v.mid ELSE t.best_message_id END, "
        f"plate_normalized = CASE WHEN {better} THEN v.plate ELSE t.plate_normalized END, "
        f"plate_folded = CASE WHEN {better} THEN v.folded ELSE t.plate_folded END, "
        f"best_confidence = {greatest}(t.best_confidence, v.conf) "
        f"FROM v WHERE t.id = v.id"
    )
    with open_cursor() as cursor:
        cursor.execute(sql, params)


def _dt(value: datetime):
    return value if connection.vendor == "postgresql" else connection.ops.adapt_datetimefield_value(value)


def _uuid(value: UUID | str):
    if connection.vendor == "postgresql":
        return value
    return (value if isinstance(value, UUID) else UUID(value)).hex
