"""The pipeline's storage step, run inside its transaction (set-wise: any batch, any backend).

On PostgreSQL a small batch of detections and health reports is stored instead by
`transport.one_statement`, from the rows the functions here build.

The ledger (`transport.Message`) is inserted first with ON CONFLICT DO
NOTHING; only messages it reports as new get their domain rows, written in
bulk, one INSERT per data type. References to other rows (an `image_ref`, a
command a control payload answers) are checked before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

import msgspec
from django.db import connection

from detections import passages
from detections.models import Detection, Image
from detections.plates import normalize, search_text
from devices import configuration
from devices.commands import Answer, apply_answers
from devices.models import Command, Device, HealthLog, ReportedConfig

from lpr_server import bulk
from .envelope import Envelope
from .models import Message

TOUCH_INTERVAL_S = 1.0

Item = tuple[Device, str, Envelope]  # (device, via, envelope)


class StorageRefusal(Exception):
    def __init__(self, code: str, detail: str, field: str | None = None):
        super().__init__(detail)
        self.code, self.detail, self.field = code, detail, field


class Stored(msgspec.Struct, gc=False):
    """A message newly committed, as post-commit consumers see it."""

    device_id: str
    via: str
    envelope: Envelope
    received_at: datetime
    latency_ms: float | None
    passage_id: int | None = None  # detections: the passage the read joined
    plate_normalized: str = ""  # detections: made once here, for live events and alert intake too
    candidates_normalized: Sequence[str] = ()


@dataclass(slots=True)
class Outcome:
    inserted: set[int] = field(default_factory=set)
    refused: dict[int, StorageRefusal] = field(default_factory=dict)
    stored: list[Stored] = field(default_factory=list)


LEDGER_FIELDS = ["message_id", "device", "data_type", "received_via", "protocol", "sequence", "sent_at", "received_at",
                 "latency_ms"]  # fmt: skip


def write(items: list[Item], received_at: datetime) -> Outcome:
    outcome = Outcome()
    _check_references(items, outcome)
    candidates = first_of_each_id(items, outcome)
    latency = {i: latency_of(items[i][2], received_at) for i in candidates}
    ledger_rows = [ledger_row(items[i], received_at, latency[i]) for i in candidates]
    new_ids = set(bulk.insert_new(Message, LEDGER_FIELDS, ledger_rows, key="message_id"))
    fresh = [i for i in candidates if items[i][2].id_text in new_ids]
    outcome.inserted.update(fresh)
    by_type: dict[str, list[Stored]] = {}
    for i in fresh:
        device, via, env = items[i]
        stored = Stored(device.id, via, env, received_at, latency[i])
        by_type.setdefault(env.data_type, []).append(stored)
        outcome.stored.append(stored)
    _write_detections(by_type.get("detection", []))
    _write_health(by_type.get("health", []))
    _write_configs(by_type.get("config", []))
    _apply_controls(by_type.get("control", []))
    _touch_devices([items[i] for i in fresh], received_at)
    return outcome


def ledger_row(item: Item, received_at: datetime, latency_ms: float) -> tuple:
    """A message's ledger row, in the order of LEDGER_FIELDS."""
    device, via, e = item
    return (e.message_id, device.id, e.data_type, via, e.protocol, e.sequence, e.timestamp, received_at, latency_ms)


def first_of_each_id(items: list[Item], outcome: Outcome) -> list[int]:
    """Indexes still to store; a message_id repeated inside one batch is stored once."""
    seen: set[str] = set()
    keep = []
    for i, (_, _, env) in enumerate(items):
        if i in outcome.refused or env.id_text in seen:
            continue
        seen.add(env.id_text)
        keep.append(i)
    return keep


def _check_references(items: list[Item], outcome: Outcome) -> None:
    image_refs = {e.payload.image_ref for _, _, e in items if e.data_type == "detection" and e.payload.image_ref}
    command_ids = {e.payload.command_id for _, _, e in items if e.data_type == "control"}
    images = dict(Image.objects.filter(id__in=image_refs).values_list("id", "device_id")) if image_refs else {}
    commands = dict(Command.objects.filter(id__in=command_ids).values_list("id", "device_id")) if command_ids else {}
    for i, (device, _, env) in enumerate(items):
        if env.data_type == "detection" and env.payload.image_ref and images.get(env.payload.image_ref) != device.id:
            outcome.refused[i] = StorageRefusal("invalid", "image_ref is not an image this device uploaded.", "payload.image_ref")
        elif env.data_type == "control" and commands.get(env.payload.command_id) != device.id:
            outcome.refused[i] = StorageRefusal("invalid", "command_id is not a command for this device.", "payload.command_id")
    _check_config_versions(items, outcome)


def _check_config_versions(items: list[Item], outcome: Outcome) -> None:
    """A reported config older than one the device already reported is refused (one query per batch)."""
    configs = [i for i, (_, _, e) in enumerate(items) if e.data_type == "config" and i not in outcome.refused]
    if not configs:
        return
    stale = configuration.stale_reports([(items[i][0].id, items[i][2].payload.version) for i in configs])
    for n in stale:
        detail = "version is older than a configuration version this device already reported."
        outcome.refused[configs[n]] = StorageRefusal("invalid", detail, "payload.version")


DETECTION_FIELDS = ["message_id", "device", "plate", "plate_normalized", "confidence", "region", "candidates",
                    "vehicle", "bbox", "direction", "speed_kph", "lane", "image", "captured_at", "received_at",
                    "received_via", "protocol", "latency_ms", "extra", "search_text", "passage"]  # fmt: skip
HEALTH_FIELDS = ["message_id", "device", "reported_at", "received_at", "received_via", "cpu_percent", "memory_percent",
                 "temperature_c", "disk_percent", "uptime_s", "fps", "queue_depth", "firmware", "latency_ms",
                 "bandwidth_kbps", "packet_loss", "uptime_percent", "extra"]  # fmt: skip


def _write_detections(stored: list[Stored]) -> None:
    reads = [read_of(s) for s in stored]
    # In this transaction (a few queries per batch), so alerts see each detection's passage.
    passage_ids = passages.assign(reads)
    bulk.insert(Detection, DETECTION_FIELDS, [detection_row(s, r, p) for s, r, p in zip(stored, reads, passage_ids)])


def read_of(s: Stored) -> passages.Read:
    """A detection as passage grouping sees it."""
    p = s.envelope.payload
    return passages.Read(s.device_id, normalize(p.plate), p.confidence, s.envelope.timestamp, s.envelope.message_id)


def detection_row(s: Stored, read: passages.Read, passage_id: int | None) -> tuple:
    """A detection's row, in the order of DETECTION_FIELDS; fills in what `s` carries to post-commit consumers."""
    e, p = s.envelope, s.envelope.payload
    s.passage_id, s.plate_normalized = passage_id, read.plate_normalized
    text = read.folded
    if p.candidates:
        s.candidates_normalized = [normalize(c.plate) for c in p.candidates]
        text = search_text(read.plate_normalized, s.candidates_normalized)
    return (
        e.message_id, s.device_id, p.plate, read.plate_normalized, p.confidence, p.region or "",
        _json(p.candidates, _EMPTY_LIST), _json(p.vehicle, _EMPTY_OBJECT), _json(p.bbox, None),
        _direction(p.direction), p.speed_kph, p.lane, p.image_ref, e.timestamp, s.received_at, s.via, e.protocol,
        s.latency_ms, _json(e.extra, _EMPTY_OBJECT), text, passage_id,
    )  # fmt: skip


def _write_health(stored: list[Stored]) -> None:
    bulk.insert(HealthLog, HEALTH_FIELDS, [health_row(s) for s in stored])


def health_row(s: Stored) -> tuple:
    """A health report's row, in the order of HEALTH_FIELDS."""
    e, p, net = s.envelope, s.envelope.payload, s.envelope.payload.network or _NO_NETWORK
    return (
        e.message_id, s.device_id, e.timestamp, s.received_at, s.via, p.cpu_percent, p.memory_percent,
        p.temperature_c, p.disk_percent, p.uptime_s, p.fps, p.queue_depth, p.firmware or "", net.latency_ms,
        net.bandwidth_kbps, net.packet_loss, net.uptime_percent, _json(e.extra, _EMPTY_OBJECT),
    )  # fmt: skip


def _write_configs(stored: list[Stored]) -> None:
    bulk.insert(
        ReportedConfig,
        ["message_id", "device", "version", "values", "reported_at", "received_at"],
        [(s.envelope.message_id, s.device_id, s.envelope.payload.version, s.envelope.payload.values,
          s.envelope.timestamp, s.received_at) for s in stored],
    )  # fmt: skip


_encode = msgspec.json.Encoder().encode
_EMPTY_LIST, _EMPTY_OBJECT = bulk.JsonText(b"[]"), bulk.JsonText(b"{}")


def _json(value, empty: bulk.JsonText | None) -> bulk.JsonText | None:
    """A JSON column's text, encoded straight from the decoded structs (no detour through dicts)."""
    return bulk.JsonText(_encode(value)) if value else empty


def _apply_controls(stored: list[Stored]) -> None:
    by_device: dict[str, list[Answer]] = {}
    via_of: dict[str, str] = {}
    for s in stored:
        p = s.envelope.payload
        by_device.setdefault(s.device_id, []).append(Answer(p.command_id, p.status, p.result, p.error))
        via_of[s.device_id] = s.via
    for device_id, answers in by_device.items():
        apply_answers(device_id, answers, via_of[device_id])


def _touch_devices(items: list[Item], now: datetime) -> None:
    """Keep last_seen/transport/firmware current without an UPDATE per message.

    Best effort, and never waiting: a device row another transaction holds (the watch loop, a concurrent batch)
    is left for the next batch, at most TOUCH_INTERVAL_S later. Waiting for it here would hold this batch's
    locks meanwhile, and two such waits make a deadlock.
    """
    stale = stale_devices(items, now)
    if stale:
        mark_touched(stale, _touch(stale, now), now)


def stale_devices(items: list[Item], now: datetime) -> dict[str, tuple[Device, str, str]]:
    """The devices of `items` whose row is due a touch, by id: (device, transport, firmware) to write."""
    stale: dict[str, tuple[Device, str, str]] = {}
    for device, via, env in items:
        reported = env.payload.firmware if env.data_type == "health" else None
        firmware = reported or (stale[device.pk][2] if device.pk in stale else device.firmware)
        seen = device.last_seen_at
        if firmware != device.firmware or seen is None or via != device.last_transport \
                or (now - seen).total_seconds() >= TOUCH_INTERVAL_S:  # fmt: skip
            stale[device.pk] = (device, via, firmware)
    return stale


def mark_touched(stale: dict[str, tuple[Device, str, str]], touched: list[str], now: datetime) -> None:
    """Bring the in-memory devices whose rows were touched up to date (so the next batch sees them fresh)."""
    for pk in touched:
        device, via, firmware = stale[pk]
        device.last_seen_at, device.last_transport, device.firmware = now, via, firmware


def _touch(stale: dict[str, tuple[Device, str, str]], now: datetime) -> list[str]:
    """Update the device rows no other transaction holds, in one statement; return their ids."""
    if connection.vendor != "postgresql":  # SQLite has no row locks to skip
        by_change: dict[tuple[str, str], list[str]] = {}
        for pk, (_, via, firmware) in stale.items():
            by_change.setdefault((via, firmware), []).append(pk)
        for (via, firmware), pks in by_change.items():
            Device.objects.filter(pk__in=pks).update(last_seen_at=now, last_transport=via, firmware=firmware)
        return list(stale)
    # NO KEY: what the UPDATE takes. A plain FOR UPDATE would also skip rows that concurrent batches merely
    # reference (their foreign-key checks hold KEY SHARE), leaving busy devices' last_seen stale.
    ids = sorted(stale)
    with bulk.logged(_TOUCH_SQL), bulk.server_cursor() as cursor:
        cursor.execute(_TOUCH_SQL, [ids, [stale[pk][1] for pk in ids], [stale[pk][2] for pk in ids], now])
        return [row[0] for row in cursor.fetchall()]


_TOUCH_SQL = (
    "WITH v(id, via, firmware) AS (SELECT * FROM unnest(%b::text[], %b::text[], %b::text[])), "
    "free AS (SELECT d.id FROM {table} d JOIN v USING (id) ORDER BY d.id FOR NO KEY UPDATE OF d SKIP LOCKED) "
    "UPDATE {table} AS d SET last_seen_at = %b, last_transport = v.via, firmware = v.firmware "
    "FROM v JOIN free USING (id) WHERE d.id = v.id RETURNING d.id"
).format(table=Device._meta.db_table)


def latency_of(env: Envelope, received_at: datetime) -> float:
    return round((received_at - env.timestamp).total_seconds() * 1000, 3)


def _direction(value: str | float | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else f"{value:g}"


class _NoNetwork:
    latency_ms = bandwidth_kbps = packet_loss = uptime_percent = None


_NO_NETWORK = _NoNetwork()
