"""Plate Recognizer webhooks: Stream (`hook.event` "recognition") and Snapshot ("image.done"), JSON or multipart.

Both carry `data.results`, one per plate in a frame; scores are 0-1, times
ISO 8601. Multipart sends the JSON in the `json` field and the frame in
`upload`; the frame becomes the image of every read in it. A read's id is
the camera, the frame's time and file, and the plate's position in the frame.
"""

from __future__ import annotations

import math
from typing import Any

from .common import (
    CompatError, Mapped, Picture, bbox_of_points, body_digest, candidates, confidence, envelope, message_id, number,
    text, timestamp, top, vehicle, without,
)  # fmt: skip

FORMAT = "platerecognizer"


def map_body(body: Any, device_id: str, raw: bytes, upload: bytes | None = None) -> list[Mapped]:
    if not isinstance(body, dict):
        raise CompatError("A Plate Recognizer webhook is a JSON object.")
    hook = body.get("hook") if isinstance(body.get("hook"), dict) else {}
    data = body.get("data") if isinstance(body.get("data"), dict) else body  # Snapshot's bare API answer has no hook
    results = data.get("results")
    if not isinstance(results, list):
        raise CompatError("No data.results list in the webhook.", "data.results")
    at = timestamp(data.get("timestamp") or data.get("timestamp_local"), "data.timestamp")
    frame = [text(data.get("camera_id") or hook.get("id")), text(data.get("timestamp")), text(data.get("filename"))]
    if not any(frame):
        frame = [body_digest(raw)]
    common = {"hook": hook, **without(data, "results")} if hook else without(data, "results")
    out = []
    for i, result in enumerate(results):
        out.append(_read(result, i, device_id, at, frame, common, upload))
    return out


def _read(result: Any, i: int, device_id: str, at, frame: list[str], common: dict, upload: bytes | None) -> Mapped:
    if not isinstance(result, dict) or not text(result.get("plate")):
        raise CompatError(f"data.results[{i}] has no plate.", f"data.results.{i}.plate")
    plate = text(result["plate"])
    region = result.get("region")
    v = result.get("vehicle") if isinstance(result.get("vehicle"), dict) else {}
    make_model = result.get("model_make")
    payload = {
        "plate": plate[:32],
        "confidence": confidence(result.get("score"), f"data.results.{i}.score"),
        "region": text(region.get("code") if isinstance(region, dict) else region)[:32],
        "candidates": candidates(result.get("candidates"), "plate", "score", exclude=plate),
        "bbox": _box(result.get("box")),
        "vehicle": vehicle(
            type=(text(v.get("type")), _score(v.get("score"))),
            make=top(make_model, "make"), model=top(make_model, "model"), color=top(result.get("color"), "color"),
        ),
        "direction": _degrees(result.get("direction")),
        FORMAT: {**common, "result": result},
    }
    msg_id = message_id(device_id, FORMAT, *frame, i, plate)
    pictures = [Picture(upload, "scene", "upload")] if upload else []
    return Mapped(envelope(msg_id, device_id, at, "detection", payload), pictures)


def _box(box: Any) -> dict | None:
    if not isinstance(box, dict):
        return None
    corners = [{"x": box.get("xmin"), "y": box.get("ymin")}, {"x": box.get("xmax"), "y": box.get("ymax")}]
    return bbox_of_points(corners)


def _score(value: Any) -> float | None:
    return None if value in (None, "") else confidence(value, "vehicle.score")


def _degrees(value: Any) -> float | None:
    degrees = number(value)
    return degrees % 360 if degrees is not None and math.isfinite(degrees) else None
