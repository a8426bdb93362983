"""What every camera-format mapping shares: lenient value parsing and building contract envelopes.

Mappings are pure: a parsed body in, `Mapped` envelopes (plain dicts, as a
camera would have sent them) out, each with the pictures that came with it.
The pipeline then validates and stores them like any other message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

# Fixed forever: message ids derived from a format's own ids must stay the same across releases.
NAMESPACE = uuid.UUID("6f1d6a52-2a4e-4f0c-9a57-3c1b1f0e9d21")
EPOCH_MS_ABOVE = 100_000_000_000  # a number above this is epoch milliseconds (as seconds it would be year 5138)


class CompatError(Exception):
    """Input a mapping cannot use; `code` is the contract's error code."""

    def __init__(self, detail: str, field: str | None = None, code: str = "invalid"):
        super().__init__(detail)
        self.code, self.detail, self.field = code, detail, field


@dataclass(slots=True)
class Picture:
    data: bytes
    kind: str  # plate, vehicle or scene
    name: str = ""


@dataclass(slots=True)
class Mapped:
    envelope: dict[str, Any]
    pictures: list[Picture] = field(default_factory=list)


def message_id(device_id: str, fmt: str, *ids: Any) -> str:
    """uuid5 of the format's own ids: a resent webhook gets the same id and is stored once."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join([device_id, fmt, *(str(i) for i in ids)])))


def body_digest(raw: bytes) -> str:
    """For formats that carry no id of their own: the same body resent is the same message."""
    return hashlib.sha256(raw).hexdigest()


def confidence(value: Any, name: str) -> float:
    """0..1 from 0..1, 0..100, or either as a string ('97', '0.93', '93%')."""
    if isinstance(value, str):
        value = value.strip().rstrip("%").strip()
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON integers have no size limit
        raise CompatError(f"{name} must be a number (0-1 or 0-100), not {_short(value)}.", name) from None
    if not 0 <= number <= 100:
        raise CompatError(f"{name} {number} is outside 0-1 and 0-100.", name)
    return round(number / 100 if number > 1 else number, 6)


def optional_confidence(value: Any, name: str) -> float | None:
    return None if value in (None, "") else confidence(value, name)


def timestamp(value: Any, name: str) -> datetime | None:
    """Epoch seconds or milliseconds (number or digits), or ISO 8601 with or without a zone (then UTC)."""
    if value in (None, ""):
        return None
    if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
        value = float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = value / 1000 if abs(value) > EPOCH_MS_ABOVE else value
            return datetime.fromtimestamp(seconds, timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise CompatError(f"{name} {_short(value)} is not a usable epoch time.", name) from None
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise CompatError(f"{name} must be epoch seconds/milliseconds or ISO 8601, not {_short(value)}.", name) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def text(value: Any) -> str:
    """Ids and names arrive as numbers or strings; empty stays empty."""
    return "" if value is None else str(value).strip()


def listed(value: Any) -> list:
    """A field that should be a list, as one: anything else (a number, a string, an object) counts as empty."""
    return value if isinstance(value, list) else []


def number(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _short(value: Any) -> str:
    """A value for an error message: hostile input may be megabytes long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def envelope(msg_id: str, device_id: str, at: datetime | None, data_type: str, payload: dict) -> dict[str, Any]:
    when = at or datetime.now(timezone.utc)
    return {
        "message_id": msg_id,
        "timestamp": when.isoformat(),
        "protocol": "rest",
        "edge_device_id": device_id,
        "data_type": data_type,
        "payload": {k: v for k, v in payload.items() if v not in (None, "", [], {})},
    }


def candidates(items: Any, plate_key: str, score_key: str, exclude: str = "") -> list[dict]:
    out, seen = [], {exclude}
    for item in listed(items):
        plate = text(item.get(plate_key)) if isinstance(item, dict) else ""
        if not plate or plate in seen:
            continue
        seen.add(plate)
        out.append({"plate": plate[:32], "confidence": optional_confidence(item.get(score_key), "candidates.confidence")})
    return out


def bbox_of_points(points: Any) -> dict | None:
    """{x, y, w, h} around a polygon of {x, y} corners."""
    pts = [(number(p.get("x")), number(p.get("y"))) for p in listed(points) if isinstance(p, dict)]
    pts = [(x, y) for x, y in pts if x is not None and y is not None]
    if not pts:
        return None
    xs, ys = [x for x, _ in pts], [y for _, y in pts]
    return {"x": min(xs), "y": min(ys), "w": max(xs) - min(xs), "h": max(ys) - min(ys)}


def top(items: Any, key: str = "name") -> tuple[str, float | None]:
    """The first (best) entry of a ranked [{name, confidence}] list."""
    if isinstance(items, list) and items and isinstance(items[0], dict):
        best = items[0]
        score = best.get("confidence", best.get("score"))
        return text(best.get(key)), optional_confidence(score, key)
    return "", None


def vehicle(**attributes: tuple[str, float | None]) -> dict:
    """{type, make, model, color} with `<name>_confidence` beside each attribute that has one."""
    out: dict[str, Any] = {}
    for name, (value, score) in attributes.items():
        if value:
            out[name] = value
            if score is not None:
                out[f"{name}_confidence"] = score
    return out


def without(obj: dict, *keys: str) -> dict:
    return {k: v for k, v in obj.items() if k not in keys}


def base64_picture(value: Any, kind: str, name: str, skipped: list[str]) -> list[Picture]:
    """A picture sent inline as base64. Text that is not base64 at all (a placeholder) is skipped and
    named in `skipped`; base64 that decodes to something other than a JPEG/PNG is refused later, by the image check."""
    if not isinstance(value, str) or not value.strip():
        return []
    try:
        encoded = value.split(",", 1)[-1] if value.startswith("data:") else value
        data = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        skipped.append(name)
        return []
    return [Picture(data, kind, name)] if data else []
