"""Plate text: the one definition of "the same plate" and of "a plate OCR may have misread".

`normalize` is what is stored beside the plate as sent. `fold` maps
characters OCR confuses onto one representative, so 'D2651BF', 'O2651BF'
and '02651B8' fold alike; fuzzy search and passage grouping compare folded
text by edit distance.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

_SEPARATORS = re.compile(r"[\s\-_.·•:/]+")

# Each group folds onto its first character. Digits are the representatives, so
# folded text reads as "shape" rather than letters.
CONFUSABLE_GROUPS = ("0ODQ", "1IL", "8B", "5S", "2Z", "6G", "7T", "4A")
FOLD_FROM = "".join(group[1:] for group in CONFUSABLE_GROUPS)
FOLD_TO = "".join(group[0] * (len(group) - 1) for group in CONFUSABLE_GROUPS)
_FOLD_TABLE = str.maketrans(FOLD_FROM, FOLD_TO)

MAX_DISTANCE = 2


@lru_cache(maxsize=16384)  # a car is read several times in a row: most plates were just normalised
def normalize(plate: str) -> str:
    """Upper case, with spaces, dashes and other separators removed: 'ab-123 cd' -> 'AB123CD'."""
    return _SEPARATORS.sub("", plate).upper()


def fold(plate: str) -> str:
    """The normalised plate with OCR-confusable characters merged: 'DB-5O1' -> '08501'."""
    return fold_normalized(normalize(plate))


def fold_normalized(plate_normalized: str) -> str:
    """`fold` of a plate already normalised."""
    return plate_normalized.translate(_FOLD_TABLE)


def search_text(plate: str, candidates: Iterable[str] = ()) -> str:
    """What fuzzy search indexes for one read: its folded plate, then its folded candidates, space-separated."""
    words = [fold(plate)]
    for candidate in candidates:
        folded = fold(candidate)
        if folded and folded not in words:
            words.append(folded)
    return " ".join(w for w in words if w)


def distance(a: str, b: str, limit: int = MAX_DISTANCE) -> int:
    """Levenshtein distance, or `limit + 1` as soon as it is certainly above `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return min(previous[-1], limit + 1)


def near(a_folded: str, b_folded: str, limit: int) -> bool:
    if a_folded == b_folded:
        return True
    if limit == 1:  # the common case (passage grouping), in linear time
        return _within_one(a_folded, b_folded)
    return distance(a_folded, b_folded, limit) <= limit


def _within_one(a: str, b: str) -> bool:
    if len(a) > len(b):
        a, b = b, a
    if len(b) - len(a) > 1:
        return False
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i + 1 :] == b[i + 1 :] if len(a) == len(b) else a[i:] == b[i + 1 :]


def matches_any_word(text: str, query_folded: str, limit: int) -> bool:
    """Whether one word of a `search_text` is within `limit` edits of the folded query."""
    return any(near(word, query_folded, limit) for word in text.split(" ") if word)


def max_fuzzy_distance(query_folded: str) -> int:
    """The edit distance lenient watchlist entries allow for this length: 2 from 7 characters, else 1
    (fuzzy search's default is detections.search.default_distance).

    Two edits in a shorter plate change a third of it or more, and match too
    much to be useful (Elasticsearch's AUTO fuzziness scales the same way).
    A search may still ask for 2 explicitly down to the length the index can
    answer (search.fuzzy_limits).
    """
    return MAX_DISTANCE if len(query_folded) >= 7 else 1 if len(query_folded) >= 3 else 0


def trigrams(word: str) -> set[str]:
    """pg_trgm's trigrams of one word (two spaces before, one after); used to bound the index threshold."""
    padded = f"  {word.lower()} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def wildcard_to_like(pattern: str) -> str:
    """'AB*1?' -> 'AB%1_': `*` any run, `?` one character; LIKE's own wildcards escaped."""
    text = normalize(pattern.replace("*", "\x00").replace("?", "\x01"))
    text = text.replace("\\", "\\\\").replace("%", "\\%")
    return text.replace("\x00", "%").replace("\x01", "_")


def fold_like(like_pattern: str) -> str:
    """A LIKE pattern over normalised plates, folded: it matches the folded text of every plate the
    original matches (wildcards and escapes are left as they are)."""
    return like_pattern.translate(_FOLD_TABLE)


def literal_count(pattern: str) -> int:
    return len(normalize(pattern.replace("*", "").replace("?", "")))
