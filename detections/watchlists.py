"""Watchlist entries: validating them, importing and exporting lists as CSV, and the in-memory index `match` uses.

An entry is a plate or a pattern (a regular expression matched whole against
the normalised plate) with a match mode:
- exact: the read's normalised plate equals the entry's (or the pattern matches it);
- lenient: the read's plate or any of its candidates, OCR-confusable
  characters folded (detections.plates.fold), is within the edit distance
  detections.plates.max_fuzzy_distance allows for the entry's length.
An entry may be limited to one device or one site and to a time window.

The index keeps a lenient entry of k allowed edits (k > 0) under its k+2
pieces. Each edit touches at most one piece, so a read within k edits holds
at least two of them intact, each shifted by at most k: only entries sharing
two pieces with a read are compared with it by edit distance, not all
100,000, and memory stays at k+2 keys per entry.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Iterator, NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils.dateparse import parse_datetime

from devices.models import Device
from devices.storable import contains_nul

from .alert_models import Watchlist, WatchlistEntry
from .plates import MAX_DISTANCE, fold, max_fuzzy_distance, near, normalize

CSV_FIELDS = ["value", "kind", "match", "device", "site", "active_from", "active_until", "priority", "note"]
IMPORT_CHUNK = 5000
MAX_PATTERN_CHARS = 200


class InvalidEntry(ValueError):
    def __init__(self, field: str, detail: str):
        super().__init__(detail)
        self.field, self.detail = field, detail


def clean_value(kind: str, value: str) -> str:
    """The value as stored: a normalised plate, or a pattern that compiles. Raises InvalidEntry."""
    if kind == "pattern":
        if not value or len(value) > MAX_PATTERN_CHARS:
            raise InvalidEntry("value", f"A pattern needs 1 to {MAX_PATTERN_CHARS} characters.")
        try:
            re.compile(value)
        except re.error as exc:
            raise InvalidEntry("value", f"The pattern does not compile: {exc}.") from None
        return value
    if kind != "plate":
        raise InvalidEntry("kind", "kind must be plate or pattern.")
    plate = normalize(value)
    if not plate or len(plate) > 32:
        raise InvalidEntry("value", "A plate needs 1 to 32 characters besides separators.")
    return plate


def check_entry(entry: WatchlistEntry) -> WatchlistEntry:
    """Normalise and validate an entry in place (the API, the admin and the CSV import all come here)."""
    entry.value = clean_value(entry.kind, entry.value)
    if entry.match not in ("exact", "lenient"):
        raise InvalidEntry("match", "match must be exact or lenient.")
    if entry.active_from and entry.active_until and entry.active_from >= entry.active_until:
        raise InvalidEntry("active_until", "active_until must be later than active_from.")
    return entry


# --- CSV -------------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    created: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)

    def as_dict(self) -> dict:
        return {"created": self.created, "errors": [{"line": line, "error": why} for line, why in self.errors]}


def import_csv(watchlist: Watchlist, text: str | Iterable[str], replace: bool = False) -> ImportReport:
    """Add the good rows of a CSV (header: CSV_FIELDS, `value` or `plate` required); report the bad ones by line."""
    lines = io.StringIO(text, newline="") if isinstance(text, str) else text  # the csv module reads its own newlines
    reader = csv.DictReader(lines)
    report = ImportReport()
    try:
        return _import_rows(watchlist, reader, report, replace)
    except csv.Error as exc:  # e.g. a stray carriage return inside a field
        report.created = 0  # the rows before it were rolled back with the transaction
        report.errors.append((reader.line_num, f"not readable as CSV: {exc}"))
        return report


def _import_rows(watchlist: Watchlist, reader: csv.DictReader, report: ImportReport, replace: bool) -> ImportReport:
    headers = [h.strip().lower() for h in reader.fieldnames or []]
    reader.fieldnames = ["value" if h == "plate" else h for h in headers]
    if "value" not in reader.fieldnames:
        report.errors.append((1, "The header must name a value (or plate) column."))
        return report
    devices = set(Device.objects.values_list("id", flat=True))
    with transaction.atomic():
        if replace:
            watchlist.entries.all().delete()
        chunk: list[WatchlistEntry] = []
        for row in reader:
            try:
                chunk.append(_entry_from_row(watchlist, row, devices))
            except InvalidEntry as exc:
                report.errors.append((reader.line_num, f"{exc.field}: {exc.detail}"))
            if len(chunk) >= IMPORT_CHUNK:
                report.created += len(WatchlistEntry.objects.bulk_create(chunk))
                chunk = []
        report.created += len(WatchlistEntry.objects.bulk_create(chunk))
    return report


def _entry_from_row(watchlist: Watchlist, row: dict, devices: set[str]) -> WatchlistEntry:
    if None in row:
        raise InvalidEntry("row", "more columns than the header names.")
    if contains_nul(row):
        raise InvalidEntry("row", "NUL characters cannot be stored.")
    get = lambda name: (row.get(name) or "").strip()  # noqa: E731
    device = get("device")
    if device and device not in devices:
        raise InvalidEntry("device", f"no device {device!r}.")
    try:
        priority = int(get("priority") or 1)
    except ValueError:
        raise InvalidEntry("priority", "priority must be a whole number.") from None
    if not 0 <= priority <= 32767:
        raise InvalidEntry("priority", "priority must be between 0 and 32767.")
    entry = WatchlistEntry(
        watchlist=watchlist, kind=get("kind") or "plate", value=get("value"), match=get("match") or "exact",
        device_id=device or None, site=get("site"), active_from=_when(get("active_from"), "active_from"),
        active_until=_when(get("active_until"), "active_until"), priority=priority, note=get("note"),
    )  # fmt: skip
    return check_entry(entry)


def _when(text: str, name: str) -> datetime | None:
    if not text:
        return None
    try:
        value = parse_datetime(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise InvalidEntry(name, f"{name} must be an ISO 8601 date and time with a UTC offset.")
    return value


def export_csv(watchlist: Watchlist) -> Iterator[str]:
    """The list as CSV lines (header first), streamed: import_csv reads them back unchanged."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    rows = watchlist.entries.order_by("id").values_list(
        "value", "kind", "match", "device_id", "site", "active_from", "active_until", "priority", "note"
    )
    for row in rows.iterator(chunk_size=IMPORT_CHUNK):
        v, k, m, d, s, af, au, p, n = row
        writer.writerow([v, k, m, d or "", s, af.isoformat() if af else "", au.isoformat() if au else "", p, n])
        if out.tell() > 64 * 1024:
            yield _drain(out)
    yield _drain(out)


def _drain(out: io.StringIO) -> str:
    text = out.getvalue()
    out.seek(0)
    out.truncate()
    return text


# --- the index -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    entry_id: int
    watchlist_id: int
    kind: str
    match: str
    value: str
    folded: str
    limit: int
    regex: re.Pattern | None
    device_id: str | None
    site: str
    active_from: datetime | None
    active_until: datetime | None
    priority: int
    note: str

    def applies(self, device_id: str, site: str, at: datetime) -> bool:
        return (
            (self.device_id is None or self.device_id == device_id)
            and (not self.site or self.site == site)
            and (self.active_from is None or self.active_from <= at)
            and (self.active_until is None or at < self.active_until)
        )


@dataclass(slots=True)
class Read:
    """What matching needs of one stored detection."""

    device_id: str
    site: str
    captured_at: datetime
    plate: str  # normalised
    candidates: list[str]  # normalised


class Index:
    def __init__(self, rules: Iterable[Rule]):
        self.size = 0
        self.exact: dict[str, list[Rule]] = {}
        self.lenient: dict[str, list[int]] = {}  # piece key -> entry ids
        self.rules: dict[int, Rule] = {}  # lenient entries by id
        self.counts: dict[int, Counter] = {}  # characters of each lenient entry, for `_bag_within`
        self.patterns: list[Rule] = []
        for rule in rules:
            self.size += 1
            if rule.kind == "pattern":
                self.patterns.append(rule)
            elif rule.match == "exact":
                self.exact.setdefault(rule.value, []).append(rule)
            else:
                self.rules[rule.entry_id] = rule
                self.counts[rule.entry_id] = Counter(rule.folded)
                for i, (start, length) in enumerate(pieces(len(rule.folded))):
                    key = _piece_key(len(rule.folded), i, rule.folded[start : start + length])
                    self.lenient.setdefault(key, []).append(rule.entry_id)

    def hits(self, read: Read) -> list[tuple[Rule, str]]:
        """(rule, the read text it matched) for every rule that applies to this read."""
        found: dict[int, tuple[Rule, str]] = {}
        texts = [read.plate] + [c for c in read.candidates if c and c != read.plate]
        for rule in self.exact.get(read.plate, ()):
            found[rule.entry_id] = (rule, read.plate)
        for text in texts if self.rules else ():  # lenient entries only: most lists hold exact plates alone
            folded = fold(text)
            counts = Counter(folded)
            for rule in self._lenient_candidates(folded):
                if rule.entry_id not in found and _bag_within(counts, self.counts[rule.entry_id], rule.limit) \
                        and near(folded, rule.folded, rule.limit):  # fmt: skip
                    found[rule.entry_id] = (rule, text)
        for rule in self.patterns:
            for text in texts if rule.match == "lenient" else texts[:1]:
                if rule.entry_id not in found and rule.regex.fullmatch(text):
                    found[rule.entry_id] = (rule, text)
        return [hit for hit in found.values() if hit[0].applies(read.device_id, read.site, read.captured_at)]


    def _lenient_candidates(self, folded: str) -> list[Rule]:
        """Entries with enough pieces found in `folded` near their place: a superset of those within reach."""
        n, found = len(folded), set()
        for length in range(max(1, n - MAX_DISTANCE), n + MAX_DISTANCE + 1):
            k = max_fuzzy_distance("x" * length)
            if abs(length - n) > k:
                continue
            per_piece = []
            for i, (start, size) in enumerate(pieces(length)):
                ids: set[int] = set()
                for at in range(max(0, start - k), min(n - size, start + k) + 1):
                    ids.update(self.lenient.get(_piece_key(length, i, folded[at : at + size]), ()))
                per_piece.append(ids)
            if k == 0:
                found |= per_piece[0]
            else:  # in at least two pieces' sets (set operations run in C, unlike a per-entry count)
                for a in range(len(per_piece)):
                    for b in range(a + 1, len(per_piece)):
                        found |= per_piece[a] & per_piece[b]
        return [self.rules[i] for i in found]


def _bag_within(a: dict[str, int], b: dict[str, int], limit: int) -> bool:
    """Whether the characters of two strings differ by at most `limit` each way: a lower bound of their edit
    distance, thirty times cheaper to compute, so most candidates are set aside before `near`."""
    for x, y in ((a, b), (b, a)):
        over = 0
        for ch, n in x.items():
            over += max(0, n - y.get(ch, 0))
            if over > limit:
                return False
    return True


def pieces(length: int) -> list[tuple[int, int]]:
    """(start, length) of the pieces an entry of this length is indexed under: k+2 for k allowed edits, 1 for none."""
    k = max_fuzzy_distance("x" * length)
    count = k + 2 if k else 1
    bounds = [round(i * length / count) for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1] - bounds[i]) for i in range(count)]


def _piece_key(length: int, index: int, text: str) -> str:
    return f"{length}:{index}:{text}"


class _Stamped:
    """A value made from the active entries, made again when an entry or list changed; whether anything
    changed is asked at most every ALERT_INDEX_CHECK_S (counting 100,000 entries is a scan), so an edit takes
    effect within that time."""

    def __init__(self, make):
        self.make = make
        self.value, self.stamp, self.checked_at = None, None, float("-inf")

    def get(self):
        now = time.monotonic()
        if self.value is not None and now - self.checked_at < settings.ALERT_INDEX_CHECK_S:
            return self.value
        stamp = _stamp()
        self.checked_at = now
        if self.value is None or stamp != self.stamp:
            self.value, self.stamp = self.make(), stamp
        return self.value


_index = _Stamped(lambda: Index(_rules()))


def active_index() -> Index:
    """The index of every entry of every active watchlist (matching, in the worker)."""
    return _index.get()


def forget_index() -> None:
    """Make the next `active_index` and `prefilter` look at the database (tests; after bulk SQL)."""
    _index.value = _prefilter.value = None


class Prefilter(NamedTuple):
    """Whether a stored read could hit an active entry, as ingest asks it before handing the read to matching.

    While every active entry is an exact plate (most watchlists: stolen vehicles, permits), only reads whose
    normalised plate is one of them can; a lenient entry or a pattern can hit any read.
    """

    everything: bool
    plates: frozenset[str]

    @property
    def anything(self) -> bool:
        """Whether any read could hit (any active entry at all)."""
        return self.everything or bool(self.plates)

    def may_hit(self, plate_normalized: str) -> bool:
        return self.everything or plate_normalized in self.plates


EVERY_READ = Prefilter(True, frozenset())  # when the lists are not known: leave it all to matching


def _make_prefilter() -> Prefilter:
    active = WatchlistEntry.objects.filter(watchlist__active=True)
    exact = Q(match="exact") & ~Q(kind="pattern")
    plates = frozenset(active.filter(exact).values_list("value", flat=True).iterator(chunk_size=IMPORT_CHUNK))
    return Prefilter(active.exclude(exact).exists(), plates)


_prefilter = _Stamped(_make_prefilter)


def prefilter() -> Prefilter:
    """The active entries as `Prefilter` (alert intake, in every ingesting process)."""
    return _prefilter.get()


def _stamp() -> tuple:
    entries = WatchlistEntry.objects.aggregate(n=Count("id"), at=Max("updated_at"), top=Max("id"))
    lists = Watchlist.objects.aggregate(n=Count("id"), at=Max("updated_at"))
    return (entries["n"], entries["at"], entries["top"], lists["n"], lists["at"])


def _rules() -> Iterator[Rule]:
    rows = WatchlistEntry.objects.filter(watchlist__active=True).values_list(
        "id", "watchlist_id", "kind", "match", "value", "device_id", "site", "active_from", "active_until",
        "priority", "note",
    )  # fmt: skip
    for eid, wid, kind, match, value, device_id, site, af, au, priority, note in rows.iterator(chunk_size=IMPORT_CHUNK):
        folded = fold(value) if kind == "plate" else ""
        regex = re.compile(value) if kind == "pattern" else None
        limit = max_fuzzy_distance(folded) if match == "lenient" else 0
        yield Rule(eid, wid, kind, match, value, folded, limit, regex, device_id, site, af, au, priority, note)
