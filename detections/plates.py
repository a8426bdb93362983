"""Plate normalisation: the one definition of "the same plate text"."""

import re

_SEPARATORS = re.compile(r"[\s\-_.·•:/]+")


def normalize(plate: str) -> str:
    """Upper case, with spaces, dashes and other separators removed: 'ab-123 cd' -> 'AB123CD'."""
    return _SEPARATORS.sub("", plate).upper()
