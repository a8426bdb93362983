"""Hikvision ANPR: `EventNotificationAlert` XML, alone or multipart with its pictures.

Parsed with defusedxml and DTDs forbidden, so entity-expansion ("billion
laughs") and external-entity documents are refused before any expansion.
The event's `UUID` (with the camera's MAC address) is the read's id;
`confidenceLevel` is 0-100; `dateTime` is ISO 8601 with a zone. Pictures
arrive as multipart files named in `pictureInfoList` (licensePlatePicture,
detectionPicture, vehiclePicture); the whole event, as a dict, is kept
under the payload's `hikvision` field.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from .common import CompatError, Mapped, Picture, body_digest, confidence, envelope, message_id, number, text, timestamp

FORMAT = "hikvision"
PICTURE_KINDS = {"licensePlatePicture": "plate", "vehiclePicture": "vehicle", "detectionPicture": "scene"}
DIRECTIONS = {"forward": "approaching", "reverse": "receding", "unknown": "unknown"}


def parse_xml(raw: bytes) -> dict[str, Any]:
    try:
        root = fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise CompatError("XML with a DTD or entities is refused.", "xml") from None
    except (ParseError, ValueError) as exc:
        raise CompatError(f"Body is not well-formed XML: {exc}", "xml") from None
    if _local(root.tag) != "EventNotificationAlert":
        raise CompatError(f"Expected an EventNotificationAlert document, got <{_local(root.tag)[:40]}>.", "xml")
    event = _as_dict(root)
    if not isinstance(event, dict):
        raise CompatError("The EventNotificationAlert document has no elements.", "xml")
    return event


def map_event(event: dict[str, Any], device_id: str, raw: bytes, files: dict[str, bytes] | None = None) -> list[Mapped]:
    """One ANPR event → one detection. Other event types (heartbeats, motion) carry no read: nothing to store."""
    if text(event.get("eventType")).upper() != "ANPR":
        return []
    anpr = event.get("ANPR") if isinstance(event.get("ANPR"), dict) else {}
    plate = text(anpr.get("licensePlate"))
    if not plate:
        raise CompatError("ANPR event without licensePlate.", "ANPR.licensePlate")
    ident = text(event.get("UUID")) or body_digest(raw)
    info = _picture_infos(anpr)
    vinfo = anpr.get("vehicleInfo") if isinstance(anpr.get("vehicleInfo"), dict) else {}
    payload = {
        "plate": plate[:32],
        "confidence": confidence(anpr.get("confidenceLevel"), "ANPR.confidenceLevel"),
        "region": _region(event),
        "bbox": _plate_rect(info),
        "vehicle": {k: v for k, v in {"type": text(anpr.get("vehicleType")), "color": text(vinfo.get("color"))}.items() if v},
        "direction": DIRECTIONS.get(text(anpr.get("direction")).lower()),
        "lane": number(anpr.get("line")),
        FORMAT: event,
    }
    at = timestamp(event.get("dateTime"), "dateTime")
    msg_id = message_id(device_id, FORMAT, text(event.get("macAddress")), text(event.get("channelID")), ident)
    return [Mapped(envelope(msg_id, device_id, at, "detection", payload), _pictures(info, files or {}))]


def _pictures(info: list[dict], files: dict[str, bytes]) -> list[Picture]:
    """Files matched to pictureInfoList by name; a picture the list does not name is still kept, as a scene."""
    kinds = {text(i.get("fileName")): PICTURE_KINDS.get(text(i.get("type")), "scene") for i in info}
    ordered = sorted(files.items(), key=lambda kv: list(PICTURE_KINDS.values()).index(kinds.get(kv[0], "scene")))
    return [Picture(data, kinds.get(name, "scene"), name) for name, data in ordered]


def _picture_infos(anpr: dict) -> list[dict]:
    listing = anpr.get("pictureInfoList")
    items = listing.get("pictureInfo") if isinstance(listing, dict) else None
    items = items if isinstance(items, list) else [items] if isinstance(items, dict) else []
    return [i for i in items if isinstance(i, dict)]


def _plate_rect(info: list[dict]) -> dict | None:
    for i in info:
        rect = i.get("plateRect")
        if isinstance(rect, dict):
            x, y, w, h = (number(rect.get(k)) for k in ("X", "Y", "width", "height"))
            if None not in (x, y, w, h) and w >= 0 and h >= 0:
                return {"x": x, "y": y, "w": w, "h": h}
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _as_dict(element: Element) -> Any:
    children = list(element)
    if not children:
        return (element.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        name, value = _local(child.tag), _as_dict(child)
        if name in out:
            out[name] = out[name] + [value] if isinstance(out[name], list) else [out[name], value]
        else:
            out[name] = value
    return out


def _region(event: dict) -> str:
    """countryAbbreviation ('NON' when the camera has none); the numeric country code stays in the kept event."""
    abbreviation = text(event.get("countryAbbreviation"))
    return "" if abbreviation.upper() in ("", "NON") else abbreviation.lower()[:32]
