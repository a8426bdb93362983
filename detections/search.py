"""Finding detections and passages: the filters the operator API, the admin and the dashboard share.

Plate matching (`Query.match`):
- exact: the normalised plate equals the query's.
- prefix, wildcard (`*` any run, `?` one character): LIKE on the normalised
  plate, narrowed on PostgreSQL by the pg_trgm GIN index on `search_text`
  (which starts with the folded plate).
- fuzzy: the read's plate or one of its candidates is, after folding
  OCR-confusable characters, within 1 or 2 edits of the query's. PostgreSQL
  narrows with the trigram index (`<<%`, with a threshold low enough that no
  match within the distance can be missed), then re-checks every row exactly
  with Levenshtein; SQLite re-checks each row in Python.
Patterns that would scan everything (a lone `*`) are refused with `InvalidSearch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

from . import plates
from .models import Detection, Passage

MATCHES = ("exact", "prefix", "wildcard", "fuzzy")
MIN_PATTERN_CHARS = 2  # literal characters a prefix or wildcard search must name
MIN_FUZZY_CHARS = 3
FUZZY_MAX_MATCHES = 10_000
VEHICLE_FIELDS = ("vehicle_type", "make", "model", "color")


class InvalidSearch(ValueError):
    def __init__(self, field: str, detail: str):
        super().__init__(detail)
        self.field, self.detail = field, detail


@dataclass(frozen=True)
class Query:
    plate: str = ""
    match: str = "exact"
    distance: int | None = None  # fuzzy only; default: `default_distance` (1; 2 from 8 characters)
    device: str = ""
    site: str = ""
    since: datetime | None = None
    until: datetime | None = None
    min_confidence: float | None = None
    region: str = ""
    direction: str = ""
    vehicle_type: str = ""
    make: str = ""
    model: str = ""
    color: str = ""


def search(q: Query) -> QuerySet[Detection]:
    """Reads matching `q`, newest first. Raises `InvalidSearch` for a pattern that would scan everything."""
    qs = _filter(Detection.objects.all(), q)
    if q.plate:
        qs = _match_plate(qs, q)
    elif q.match not in MATCHES:
        raise InvalidSearch("match", f"match must be one of {', '.join(MATCHES)}.")
    return qs.order_by("-captured_at", "-id")


def search_passages(q: Query) -> QuerySet[Passage]:
    """Passages with at least one read matching `q`, most recent first."""
    reads = search(q).exclude(passage=None).order_by().values("passage_id")
    return Passage.objects.filter(id__in=reads).order_by("-last_at", "-id")


def _filter(qs: QuerySet[Detection], q: Query) -> QuerySet[Detection]:
    if q.since and q.until and q.since >= q.until:
        raise InvalidSearch("until", "until must be later than since.")
    exact = {
        "device_id": q.device, "device__site": q.site, "region__iexact": q.region, "direction__iexact": q.direction,
        "vehicle__type__iexact": q.vehicle_type, "vehicle__make__iexact": q.make,
        "vehicle__model__iexact": q.model, "vehicle__color__iexact": q.color,
    }  # fmt: skip
    qs = qs.filter(**{lookup: value for lookup, value in exact.items() if value})
    if q.since:
        qs = qs.filter(captured_at__gte=q.since)
    if q.until:
        qs = qs.filter(captured_at__lt=q.until)
    if q.min_confidence is not None:
        qs = qs.filter(confidence__gte=q.min_confidence)
    return qs


def _match_plate(qs: QuerySet[Detection], q: Query) -> QuerySet[Detection]:
    if q.match == "exact":
        if not plates.normalize(q.plate):
            raise InvalidSearch("plate", "The plate has no letters or digits.")
        return qs.filter(plate_normalized=plates.normalize(q.plate))
    if q.match in ("prefix", "wildcard"):
        if plates.literal_count(q.plate) < MIN_PATTERN_CHARS:
            raise InvalidSearch("plate", f"Name at least {MIN_PATTERN_CHARS} characters; this pattern would match everything.")
        pattern = plates.wildcard_to_like(q.plate) + ("%" if q.match == "prefix" else "")
        # search_text starts with the folded plate, so the folded pattern (open at the end) matches every read
        # the pattern does: the trigram index on search_text narrows, the plate itself decides.
        narrow = plates.fold_like(pattern).removesuffix("%") + "%"
        return qs.filter(
            _sql(f"{_column('search_text')} LIKE %s ESCAPE '\\'", [narrow]),
            _sql(f"{_column('plate_normalized')} LIKE %s ESCAPE '\\'", [pattern]),
        )
    if q.match == "fuzzy":
        return _fuzzy(qs, q)
    raise InvalidSearch("match", f"match must be one of {', '.join(MATCHES)}.")


def fuzzy_limits(plate: str, distance: int | None) -> tuple[str, int]:
    """The folded query and the edit distance a fuzzy search will use, or `InvalidSearch`."""
    folded = plates.fold(plate)
    if "*" in plate or "?" in plate:
        raise InvalidSearch("plate", "Wildcards are for match=wildcard; fuzzy takes a plate.")
    if len(folded) < MIN_FUZZY_CHARS:
        raise InvalidSearch("plate", f"A fuzzy search needs at least {MIN_FUZZY_CHARS} characters.")
    if distance is not None and not 0 <= distance <= plates.MAX_DISTANCE:
        raise InvalidSearch("distance", f"distance must be between 0 and {plates.MAX_DISTANCE}.")
    # Each edit can destroy three trigrams; at least one of the query's must survive for the index to find a row.
    usable = min(plates.MAX_DISTANCE, (len(plates.trigrams(folded)) - 1) // 3)
    return folded, min(default_distance(folded) if distance is None else distance, usable)


def default_distance(folded: str) -> int:
    """Edits a fuzzy search allows unless asked: 1 (after folding, which already forgives OCR's confusable
    characters), 2 from 8 characters. Two edits on a 7-character plate leave too few trigrams in common for the
    index to narrow a large table (p95 over 1 s at 10,000,000 reads); `distance=2` still asks for them."""
    return plates.MAX_DISTANCE if len(folded) >= 8 else 1

def _fuzzy(qs: QuerySet[Detection], q: Query) -> QuerySet[Detection]:
    folded, k = fuzzy_limits(q.plate, q.distance)
    text = _column("search_text")
    if connection.vendor != "postgresql":
        return qs.filter(_sql(f"lpr_fuzzy_match({text}, %s, %s)", [folded, k]))
    # Most reads have no candidate plates: their search_text is one word, compared without splitting it.
    recheck = (f"CASE WHEN strpos({text}, ' ') = 0 THEN levenshtein_less_equal({text}, %s, %s) <= %s ELSE EXISTS "
               f"(SELECT 1 FROM unnest(string_to_array({text}, ' ')) w WHERE levenshtein_less_equal(w, %s, %s) <= %s) END")
    narrowed = qs.filter(_sql(f"%s <<%% {text}", [folded]), _sql(recheck, [folded, k, k, folded, k, k]))
    threshold = similarity_floor(folded, k) - 0.001
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('pg_trgm.strict_word_similarity_threshold', %s, true)", [str(threshold)])
        found = list(narrowed.order_by().values_list("id", "captured_at")[: FUZZY_MAX_MATCHES + 1])
    if len(found) > FUZZY_MAX_MATCHES:
        raise InvalidSearch("plate", f"More than {FUZZY_MAX_MATCHES} reads match; narrow the search (time, device).")
    # By both key columns: only the partitions holding the reads are read, each read by its primary key (by id
    # alone, the newest-first page would walk every partition's time index looking for them).
    return qs.filter(id__in=[i for i, _ in found], captured_at__in={at for _, at in found})


def similarity_floor(folded: str, k: int) -> float:
    """The lowest trigram similarity (shared / union, as pg_trgm computes it) that a word within k edits
    of `folded` can have. A substitution or deletion loses at most 3 of the query's trigrams, an insertion
    at most 2; deletions shorten the word (fewer trigrams), insertions lengthen it. Using the exact worst
    case, not 3 per edit across the board, lets the index demand more shared trigrams: fewer rows to re-check.
    """
    distinct, n = len(plates.trigrams(folded)), len(folded)
    floor = 1.0
    for subs in range(k + 1):
        for dels in range(k + 1 - subs):
            for ins in range(k + 1 - subs - dels):
                shared = distinct - 3 * (subs + dels) - 2 * ins
                if shared <= 0:
                    return 0.0
                floor = min(floor, shared / (distinct + (n - dels + ins + 1) - shared))
    return floor


def _column(name: str) -> str:
    return f"{connection.ops.quote_name(Detection._meta.db_table)}.{connection.ops.quote_name(name)}"


def _sql(sql: str, params: list) -> RawSQL:
    return RawSQL(sql, params, output_field=BooleanField())
