"""Parse, decode and validate one envelope (CONTRACT section 1 and 2).

This is the only module that knows the wire format. Every transport hands
it bytes (or an already-parsed object, for batches) and gets back either an
`Envelope` of typed values or an `EnvelopeError` carrying the contract's
error code. It is pure: no database, no Django.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Callable, Literal, Union
from uuid import UUID

import msgspec
from cryptography.fernet import Fernet, InvalidToken

MAX_BYTES = 256 * 1024
FUTURE_LIMIT = timedelta(hours=24)
GZIP_MAGIC = b"\x1f\x8b"

DataType = Literal["detection", "health", "config", "control"]
Transport = Literal["websocket", "socketio", "rest", "mqtt"]
UnitFloat = Annotated[float, msgspec.Meta(ge=0, le=1)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
# Integers the database stores in a column of its own: a larger value would fail the whole batch's transaction.
Count = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]


class EnvelopeError(Exception):
    """Why an envelope was refused, in the contract's terms."""

    def __init__(self, code: str, detail: str, field: str | None = None, message_id: str | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field
        self.message_id = message_id


# --- wire shapes --------------------------------------------------------------


class Metadata(msgspec.Struct, forbid_unknown_fields=False):
    protocol_version: str = "1.0"
    compression: Union[bool, str] = False
    encryption: Union[bool, str] = False


class WireEnvelope(msgspec.Struct):
    message_id: UUID
    timestamp: datetime
    protocol: Transport
    edge_device_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    data_type: DataType
    payload: Union[dict[str, Any], str]
    metadata: Union[Metadata, None] = None
    sequence: Union[Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)], None] = None


class Candidate(msgspec.Struct):
    plate: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    confidence: Union[UnitFloat, None] = None


class BBox(msgspec.Struct):
    x: float
    y: float
    w: NonNegative
    h: NonNegative


class DetectionPayload(msgspec.Struct):
    plate: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    confidence: UnitFloat
    region: Union[Annotated[str, msgspec.Meta(max_length=32)], None] = None
    candidates: list[Candidate] = []
    bbox: Union[BBox, None] = None
    vehicle: Union[dict[str, Any], None] = None
    direction: Union[Literal["approaching", "receding", "unknown"], Annotated[float, msgspec.Meta(ge=0, le=360)], None] = None
    speed_kph: Union[NonNegative, None] = None
    lane: Union[float, None] = None
    image_ref: Union[UUID, None] = None


class NetworkHealth(msgspec.Struct):
    latency_ms: Union[NonNegative, None] = None
    bandwidth_kbps: Union[NonNegative, None] = None
    packet_loss: Union[UnitFloat, None] = None
    uptime_percent: Union[Percent, None] = None


class HealthPayload(msgspec.Struct):
    cpu_percent: Union[Percent, None] = None
    memory_percent: Union[Percent, None] = None
    temperature_c: Union[float, None] = None
    disk_percent: Union[Percent, None] = None
    uptime_s: Union[NonNegative, None] = None
    fps: Union[NonNegative, None] = None
    queue_depth: Union[Count, None] = None
    firmware: Union[Annotated[str, msgspec.Meta(max_length=100)], None] = None
    network: Union[NetworkHealth, None] = None


class ConfigPayload(msgspec.Struct):
    version: Count
    values: dict[str, Any]


class ControlPayload(msgspec.Struct):
    command_id: UUID
    status: Literal["received", "done", "failed"]
    result: Union[dict[str, Any], None] = None
    error: Union[str, None] = None


PAYLOAD_TYPES: dict[str, type[msgspec.Struct]] = {
    "detection": DetectionPayload,
    "health": HealthPayload,
    "config": ConfigPayload,
    "control": ControlPayload,
}
KNOWN_FIELDS = {name: frozenset(t.__struct_fields__) for name, t in PAYLOAD_TYPES.items()}


@dataclass(slots=True)
class Envelope:
    """A validated envelope: typed payload plus the payload fields the server does not know (kept)."""

    message_id: UUID
    timestamp: datetime
    protocol: str
    device_id: str
    data_type: str
    payload: Any
    extra: dict[str, Any]
    sequence: int | None


# --- decoding -------------------------------------------------------------------

_wire_decoder = msgspec.json.Decoder(WireEnvelope)
_json_decoder = msgspec.json.Decoder()
encode_json = msgspec.json.Encoder().encode
decode_json = _json_decoder.decode


def parse(
    raw: bytes | str | dict,
    payload_key: Callable[[], bytes | None] = lambda: None,
    now: datetime | None = None,
) -> Envelope:
    """Turn bytes (or a parsed dict, from a batch) into an `Envelope`, or raise `EnvelopeError`.

    `payload_key` is only called for Fernet-encrypted payloads, so the
    device's key is decrypted only when a message needs it.
    """
    wire = _decode_wire(raw)
    payload = _decode_payload(wire, payload_key)
    return _validate(wire, payload, now or datetime.now(timezone.utc))


def message_id_of(raw: bytes | str | dict) -> str | None:
    """Best effort: the `message_id` of input that failed to parse, for the rejected ack."""
    try:
        obj = raw if isinstance(raw, dict) else _json_decoder.decode(raw)
        value = obj.get("message_id") if isinstance(obj, dict) else None
        return str(value)[:64] if value is not None else None
    except (msgspec.DecodeError, TypeError, ValueError):
        return None


def _decode_wire(raw: bytes | str | dict) -> WireEnvelope:
    try:
        if isinstance(raw, dict):
            _refuse_nul(encode_json(raw), raw)
            return msgspec.convert(raw, WireEnvelope)
        if len(raw) > MAX_BYTES:
            raise EnvelopeError("too_large", f"Envelope is {len(raw)} bytes; the limit is {MAX_BYTES}.")
        _refuse_nul(raw, raw)
        return _wire_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, raw) from None
    except msgspec.DecodeError as exc:
        raise EnvelopeError("invalid", f"Body is not valid JSON: {exc}") from None


def _decode_payload(wire: WireEnvelope, payload_key: Callable[[], bytes | None]) -> dict[str, Any]:
    meta = wire.metadata or Metadata()
    if not meta.protocol_version.startswith("1."):
        raise _error(wire, "invalid", f"protocol_version {meta.protocol_version!r} is not supported; send 1.x.", "metadata.protocol_version")
    payload = wire.payload
    if meta.encryption == "fernet":
        payload = _decrypt(wire, payload, payload_key())
    elif meta.encryption not in (False, True):
        raise _error(wire, "invalid", "metadata.encryption must be false, true or \"fernet\".", "metadata.encryption")
    if meta.compression == "gzip":
        payload = _gunzip(wire, payload)
    elif meta.compression is not False:
        raise _error(wire, "invalid", "metadata.compression must be false or \"gzip\".", "metadata.compression")
    if isinstance(payload, (bytes, str)):
        _refuse_nul(payload, None, wire)
        try:
            payload = _json_decoder.decode(payload)
        except msgspec.DecodeError:
            raise _error(wire, "invalid", "Decoded payload is not JSON.", "payload") from None
    if not isinstance(payload, dict):
        raise _error(wire, "invalid", "payload must be a JSON object (or a string when compressed or encrypted).", "payload")
    return payload


def _decrypt(wire: WireEnvelope, payload: Any, key: bytes | None) -> bytes:
    if not isinstance(payload, str):
        raise _error(wire, "invalid", "An encrypted payload must be a Fernet token string.", "payload")
    if not key:
        raise _error(wire, "invalid", "This device has no payload key; send the payload unencrypted.", "payload")
    try:
        return Fernet(key).decrypt(payload.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError, ValueError):
        raise _error(wire, "invalid", "Payload does not decrypt with this device's payload key.", "payload") from None


def _gunzip(wire: WireEnvelope, payload: Any) -> bytes:
    try:
        if isinstance(payload, bytes) and payload.startswith(GZIP_MAGIC):
            data = payload  # decrypted raw gzip bytes; the usual form is base64 text, as unencrypted
        elif isinstance(payload, (str, bytes)):
            data = base64.b64decode(payload, validate=True)
        else:
            raise TypeError
        # Bounded decompression: a small gzip bomb must not become a large allocation.
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = decompressor.decompress(data, MAX_BYTES + 1)
    except (binascii.Error, zlib.error, TypeError, ValueError):
        raise _error(wire, "invalid", "Payload is not base64 of gzipped JSON.", "payload") from None
    if len(out) > MAX_BYTES:
        raise _error(wire, "too_large", f"Decompressed payload exceeds {MAX_BYTES} bytes.", "payload")
    return out


def _validate(wire: WireEnvelope, payload: dict[str, Any], now: datetime) -> Envelope:
    if wire.timestamp.tzinfo is None:
        raise _error(wire, "invalid", "timestamp must carry a time zone (e.g. a trailing Z).", "timestamp")
    if wire.timestamp - now > FUTURE_LIMIT:
        raise _error(wire, "invalid", "timestamp is more than 24 h in the future; check the camera's clock.", "timestamp")
    try:
        typed = msgspec.convert(payload, PAYLOAD_TYPES[wire.data_type])
    except msgspec.ValidationError as exc:
        raise _invalid(exc, None, wire, prefix="payload") from None
    known = KNOWN_FIELDS[wire.data_type]
    extra = {k: v for k, v in payload.items() if k not in known}
    return Envelope(
        message_id=wire.message_id,
        timestamp=wire.timestamp,
        protocol=wire.protocol,
        device_id=wire.edge_device_id,
        data_type=wire.data_type,
        payload=typed,
        extra=extra,
        sequence=wire.sequence,
    )


_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")  # \u0000 not itself escaped (\\u0000 is text)


def _refuse_nul(data: bytes | str, raw: Any, wire: WireEnvelope | None = None) -> None:
    """PostgreSQL text and jsonb cannot hold NUL: refuse it here, or the store would fail the whole batch."""
    data = data.encode() if isinstance(data, str) else data
    if b"\\u0000" in data and _NUL_ESCAPE.search(data):
        message_id = str(wire.message_id) if wire else message_id_of(raw)
        raise EnvelopeError("invalid", "Text may not contain the NUL character (\\u0000).", None, message_id)


def _error(wire: WireEnvelope, code: str, detail: str, field: str | None = None) -> EnvelopeError:
    return EnvelopeError(code, detail, field, str(wire.message_id))


def _invalid(exc: msgspec.ValidationError, raw: Any, wire: WireEnvelope | None = None, prefix: str = "") -> EnvelopeError:
    """Map msgspec's "Expected `int`, got `str` - at `$.payload.x`" to a detail and a field name."""
    text, _, path = str(exc).partition(" - at `$")
    parts = [prefix, path.rstrip("`").lstrip(".")]
    missing = re.match(r"Object missing required field `([^`]+)`", text)
    if missing:
        parts.append(missing.group(1))
    field = ".".join(p for p in parts if p) or None
    message_id = str(wire.message_id) if wire else (message_id_of(raw) if raw is not None else None)
    return EnvelopeError("invalid", text, field, message_id)


_control_decoder = msgspec.json.Decoder(ControlPayload)


def parse_control(raw: bytes) -> ControlPayload:
    """A bare control payload, as `POST /api/v1/device/commands/<id>/ack/` receives it."""
    try:
        return _control_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, None) from None
    except msgspec.DecodeError as exc:
        raise EnvelopeError("invalid", f"Body is not valid JSON: {exc}") from None
