"""OpenALPR / Rekor agent webhooks: `alpr_group`, `alpr_results`, `heartbeat`, `alpr_alert`.

Confidences are 0-100, times epoch milliseconds. Ids: a group's `best_uuid`,
a results frame's `uuid` plus each plate's index, a heartbeat's agent and
time. Crops come inline as base64 JPEG. What is not mapped is kept under the
payload's `openalpr` field (crops excepted: they become images).
"""

from __future__ import annotations

from typing import Any

from .common import (
    CompatError, Mapped, base64_picture, bbox_of_points, body_digest, candidates, confidence, envelope, listed,
    message_id, number, text, timestamp, top, vehicle, without,
)  # fmt: skip

FORMAT = "openalpr"
_CROPS = ("vehicle_crop_jpeg", "plate_crop_jpeg")


def map_body(body: Any, device_id: str, raw: bytes) -> list[Mapped]:
    if not isinstance(body, dict):
        raise CompatError("An OpenALPR webhook is a JSON object.")
    kind = text(body.get("data_type"))
    if kind == "alpr_group":
        return [_group(body, device_id)]
    if kind == "alpr_results":
        return _results(body, device_id)
    if kind == "heartbeat":
        return [_heartbeat(body, device_id, raw)]
    if kind == "alpr_alert":
        return _alert(body, device_id)
    raise CompatError(f"data_type {kind[:40]!r} is not one of alpr_group, alpr_results, heartbeat, alpr_alert.", "data_type")


def _group(g: dict, device_id: str, alert: dict | None = None) -> Mapped:
    best = g.get("best_plate") if isinstance(g.get("best_plate"), dict) else {}
    plate = text(g.get("best_plate_number") or best.get("plate"))
    if not plate:
        raise CompatError("alpr_group has no best_plate_number.", "best_plate_number")
    ident = text(g.get("best_uuid")) or text(g.get("uuids")) or body_digest(repr(sorted(g.items())).encode())
    skipped: list[str] = []
    pictures = base64_picture(best.get("plate_crop_jpeg"), "plate", "best_plate.plate_crop_jpeg", skipped)
    pictures += base64_picture(g.get("vehicle_crop_jpeg"), "vehicle", "vehicle_crop_jpeg", skipped)
    v = g.get("vehicle") if isinstance(g.get("vehicle"), dict) else {}
    original = without(g, *_CROPS)
    original["best_plate"] = without(best, *_CROPS)
    if alert:
        original["alert"] = alert
    payload = {
        "plate": plate[:32],
        "confidence": confidence(g.get("best_confidence", best.get("confidence")), "best_confidence"),
        "region": text(g.get("best_region") or best.get("region"))[:32],
        "candidates": candidates(best.get("candidates") or g.get("candidates"), "plate", "confidence", exclude=plate),
        "bbox": bbox_of_points(best.get("coordinates")),
        "vehicle": vehicle(type=top(v.get("body_type")), make=top(v.get("make")), model=top(v.get("make_model")),
                           color=top(v.get("color"))),  # fmt: skip
        "direction": _degrees(g.get("travel_direction")),
        FORMAT: original,
        "unreadable_images": skipped,
    }
    at = timestamp(g.get("epoch_start") or g.get("epoch_end"), "epoch_start")
    return Mapped(envelope(message_id(device_id, FORMAT, "group", ident), device_id, at, "detection", payload), pictures)


def _results(r: dict, device_id: str) -> list[Mapped]:
    results = r.get("results")
    if not isinstance(results, list):
        raise CompatError("alpr_results needs a results list.", "results")
    frame = text(r.get("uuid")) or text(r.get("epoch_time"))
    if not frame:
        raise CompatError("alpr_results has neither uuid nor epoch_time.", "uuid")
    at = timestamp(r.get("epoch_time"), "epoch_time")
    common = without(r, "results")
    out = []
    for i, result in enumerate(results):
        if not isinstance(result, dict) or not text(result.get("plate")):
            raise CompatError(f"results[{i}] has no plate.", f"results.{i}.plate")
        plate, index = text(result["plate"]), result.get("plate_index", i)
        skipped: list[str] = []
        pictures = base64_picture(result.get("plate_crop_jpeg"), "plate", f"results.{i}.plate_crop_jpeg", skipped)
        payload = {
            "plate": plate[:32],
            "confidence": confidence(result.get("confidence"), f"results.{i}.confidence"),
            "region": text(result.get("region"))[:32],
            "candidates": candidates(result.get("candidates"), "plate", "confidence", exclude=plate),
            "bbox": bbox_of_points(result.get("coordinates")),
            FORMAT: {**common, "result": without(result, *_CROPS)},
            "unreadable_images": skipped,
        }
        msg_id = message_id(device_id, FORMAT, "results", frame, index)
        out.append(Mapped(envelope(msg_id, device_id, at, "detection", payload), pictures))
    return out


def _heartbeat(h: dict, device_id: str, raw: bytes) -> Mapped:
    at = timestamp(h.get("timestamp") or h.get("epoch_time"), "timestamp")
    ident = text(h.get("timestamp") or h.get("epoch_time")) or body_digest(raw)
    streams = [s for s in listed(h.get("video_streams")) if isinstance(s, dict)]
    fps = [f for f in (number(s.get("fps")) for s in streams) if f is not None]
    payload = {
        "cpu_percent": _percent(number(h.get("cpu_usage_percent"))),
        "memory_percent": _ratio(h.get("memory_consumed_bytes"), h.get("memory_total_bytes")),
        "disk_percent": _ratio(_used(h.get("disk_drive_total_bytes"), h.get("disk_drive_free_bytes")), h.get("disk_drive_total_bytes")),
        "uptime_s": number(h.get("daemon_uptime_seconds") or h.get("system_uptime_seconds")),
        "fps": round(sum(fps) / len(fps), 3) if fps else None,
        "queue_depth": int(q) if (q := number(h.get("beanstalk_queue_size"))) is not None and 0 <= q < 2**63 else None,
        "firmware": text(h.get("agent_version") or h.get("openalpr_version"))[:100],
        FORMAT: h,
    }
    return Mapped(envelope(message_id(device_id, FORMAT, "heartbeat", text(h.get("agent_uid")), ident), device_id, at, "health", payload))


def _alert(a: dict, device_id: str) -> list[Mapped]:
    group = a.get("group")
    if isinstance(group, dict):
        # Same id as the group itself: an alert and its group are one read, stored once.
        return [_group({"data_type": "alpr_group", **group}, device_id, alert=without(a, "group"))]
    plate = text(a.get("plate_number"))
    if not plate:
        raise CompatError("alpr_alert has neither group nor plate_number.", "plate_number")
    payload = {"plate": plate[:32], "confidence": confidence(a.get("confidence", a.get("best_confidence")), "confidence"),
               FORMAT: a}  # fmt: skip
    ident = text(a.get("uuid") or a.get("best_uuid") or a.get("epoch_time"))
    if not ident:
        raise CompatError("alpr_alert has no id to tell a resend from a new alert (uuid, best_uuid, epoch_time).", "uuid")
    at = timestamp(a.get("epoch_time"), "epoch_time")
    return [Mapped(envelope(message_id(device_id, FORMAT, "alert", ident), device_id, at, "detection", payload))]


def _degrees(value: Any) -> float | None:
    degrees = number(value)
    return degrees % 360 if degrees is not None and degrees >= 0 else None


def _percent(value: float | None) -> float | None:
    return None if value is None else max(0.0, min(100.0, value))


def _used(total: Any, free: Any) -> float | None:
    t, f = number(total), number(free)
    return None if t is None or f is None else t - f


def _ratio(part: Any, whole: Any) -> float | None:
    p, w = number(part), number(whole)
    return _percent(round(p / w * 100, 3)) if p is not None and w else None
