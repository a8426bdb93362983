"""What PostgreSQL can store: its text and jsonb types cannot hold the NUL character (U+0000)."""

from __future__ import annotations

from typing import Any

NUL = "\x00"


def contains_nul(value: Any) -> bool:
    """True when NUL is anywhere in a string, or in a key or value of nested lists and objects."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(contains_nul(v) for v in value)
    return False


def without_nul(text: str) -> str:
    """For records of refused input, kept as evidence: NUL shown as U+FFFD."""
    return text.replace(NUL, "\ufffd")
