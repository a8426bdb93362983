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
# Integers the database columns can hold (bigint, integer): a larger one would fail at storage time.
Int64 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Int32 = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]


class EnvelopeError(Exception):
    """Why an envelope was refused, in the contract's terms."""

    def __init__(self, code: str, detail: str, field: str | None = None, message_id: str | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field
        self.message_id = message_id


# --- wire shapes --------------------------------------------------------------
# gc=False here and on the pipeline's per-message structs (Envelope, Inbound, Ack, Stored, passages.Read): decoded
# JSON holds no reference cycles, and a batch holds thousands of these at once, each of which the garbage collector
# would otherwise count towards its next collection and walk in it.


class Metadata(msgspec.Struct, forbid_unknown_fields=False, gc=False):
    protocol_version: str = "1.0"
    compression: Union[bool, str] = False
    encryption: Union[bool, str] = False


class WireEnvelope(msgspec.Struct, gc=False):
    message_id: UUID
    timestamp: datetime
    protocol: Transport
    edge_device_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    data_type: DataType
    payload: msgspec.Raw  # decoded once its data type (and any compression or encryption) is known
    metadata: Union[Metadata, None] = None
    sequence: Union[Int64, None] = None


class Candidate(msgspec.Struct, gc=False):
    plate: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    confidence: Union[UnitFloat, None] = None


class BBox(msgspec.Struct, gc=False):
    x: float
    y: float
    w: NonNegative
    h: NonNegative


class DetectionPayload(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    plate: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    confidence: UnitFloat
    region: Union[Annotated[str, msgspec.Meta(max_length=32)], None] = None
    candidates: tuple[Candidate, ...] = ()  # a tuple: the common empty one is shared, not a new list to track
    bbox: Union[BBox, None] = None
    vehicle: Union[dict[str, Any], None] = None
    direction: Union[Literal["approaching", "receding", "unknown"], Annotated[float, msgspec.Meta(ge=0, le=360)], None] = None
    speed_kph: Union[NonNegative, None] = None
    lane: Union[float, None] = None
    image_ref: Union[UUID, None] = None


class NetworkHealth(msgspec.Struct, gc=False):
    latency_ms: Union[NonNegative, None] = None
    bandwidth_kbps: Union[NonNegative, None] = None
    packet_loss: Union[UnitFloat, None] = None
    uptime_percent: Union[Percent, None] = None


class HealthPayload(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    cpu_percent: Union[Percent, None] = None
    memory_percent: Union[Percent, None] = None
    temperature_c: Union[float, None] = None
    disk_percent: Union[Percent, None] = None
    uptime_s: Union[NonNegative, None] = None
    fps: Union[NonNegative, None] = None
    queue_depth: Union[Int32, None] = None
    firmware: Union[Annotated[str, msgspec.Meta(max_length=100)], None] = None
    network: Union[NetworkHealth, None] = None


class ConfigPayload(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    version: Int32
    values: dict[str, Any]


class ControlPayload(msgspec.Struct, forbid_unknown_fields=True, gc=False):
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
# A payload with only known fields decodes straight from its bytes in one pass (the usual case); one with fields
# the server does not know (kept in `extra`) takes the slower way through a dict. Nested objects (bbox, network,
# candidates) ignore unknown fields, as they always have.
_payload_decoders = {name: msgspec.json.Decoder(t) for name, t in PAYLOAD_TYPES.items()}


class Envelope(msgspec.Struct, gc=False):
    """A validated envelope: typed payload plus the payload fields the server does not know (kept)."""

    message_id: UUID
    timestamp: datetime
    protocol: str
    device_id: str
    data_type: str
    payload: Any
    extra: dict[str, Any]
    sequence: int | None
    id_text: str = ""  # str(message_id), made once: acks, events and alert intake all need it

    def __post_init__(self) -> None:
        if not self.id_text:  # msgspec writes the canonical form as str() does, in a third of the time
            self.id_text = _encode_uuid(self.message_id)[1:-1].decode()


_encode_uuid = msgspec.json.Encoder().encode


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
    """Turn bytes (or a parsed dict) into an `Envelope`, or raise `EnvelopeError`.

    `payload_key` is only called for Fernet-encrypted payloads, so the
    device's key is decrypted only when a message needs it.
    """
    wire = _decode_wire(raw)
    _check_header(wire, now or datetime.now(timezone.utc))
    typed, extra = _decode_payload(wire, payload_key)
    return Envelope(wire.message_id, wire.timestamp, wire.protocol, wire.edge_device_id, wire.data_type, typed, extra,
                    wire.sequence)  # fmt: skip


def message_id_of(raw: bytes | str | dict) -> str | None:
    """Best effort: the `message_id` of input that failed to parse, for the rejected ack."""
    try:
        obj = raw if isinstance(raw, dict) else _json_decoder.decode(raw)
        value = obj.get("message_id") if isinstance(obj, dict) else None
        return str(value)[:64] if value is not None else None
    except (msgspec.DecodeError, TypeError, ValueError, RecursionError):
        return None


def _decode_wire(raw: bytes | str | dict) -> WireEnvelope:
    try:
        if isinstance(raw, dict):
            raw = encode_json(raw)
        if len(raw) > MAX_BYTES:
            raise EnvelopeError("too_large", f"Envelope is {len(raw)} bytes; the limit is {MAX_BYTES}.")
        return _wire_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, raw) from None
    except (msgspec.DecodeError, TypeError, RecursionError) as exc:  # RecursionError: nested deeper than the stack
        raise EnvelopeError("invalid", f"Body is not valid JSON: {exc}") from None


def _check_header(wire: WireEnvelope, now: datetime) -> None:
    if wire.timestamp.tzinfo is None:
        raise _error(wire, "invalid", "timestamp must carry a time zone (e.g. a trailing Z).", "timestamp")
    if wire.timestamp - now > FUTURE_LIMIT:
        raise _error(wire, "invalid", "timestamp is more than 24 h in the future; check the camera's clock.", "timestamp")
    meta = wire.metadata
    if meta is not None and not meta.protocol_version.startswith("1."):
        raise _error(wire, "invalid", f"protocol_version {meta.protocol_version!r} is not supported; send 1.x.", "metadata.protocol_version")


def _decode_payload(wire: WireEnvelope, payload_key: Callable[[], bytes | None]) -> tuple[Any, dict[str, Any]]:
    """The typed payload and the payload fields the server does not know."""
    data = _unwrap(wire, payload_key)
    if data[:1] != b"{":
        raise _error(wire, "invalid", "payload must be a JSON object (or a string when compressed or encrypted).", "payload")
    try:
        typed, extra = _typed(wire.data_type, data)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, None, wire, prefix="payload") from None
    except (msgspec.DecodeError, RecursionError):
        raise _error(wire, "invalid", "payload is not valid JSON.", "payload") from None
    # JSON can only carry NUL escaped, so a payload whose bytes lack the escape holds none (the usual case).
    if b"\\u0000" in data and _holds_nul(_json_decoder.decode(data)):
        raise _error(wire, "invalid", "Text in the payload may not contain NUL (\\u0000) characters.", "payload")
    return typed, extra


def _typed(data_type: str, data: bytes) -> tuple[Any, dict[str, Any]]:
    """Decode a payload object of `data_type`: in one pass when it has only known fields, else via a dict."""
    try:
        return _payload_decoders[data_type].decode(data), {}
    except msgspec.ValidationError as exc:
        if "unknown field" not in str(exc):
            raise
    fields = _json_decoder.decode(data)
    known = KNOWN_FIELDS[data_type]
    typed = msgspec.convert({k: v for k, v in fields.items() if k in known}, PAYLOAD_TYPES[data_type])
    return typed, {k: v for k, v in fields.items() if k not in known}


def _unwrap(wire: WireEnvelope, payload_key: Callable[[], bytes | None]) -> bytes:
    """The payload's JSON bytes: as sent, or decrypted and/or decompressed (CONTRACT 1.1)."""
    meta = wire.metadata or Metadata()
    data = bytes(wire.payload).strip()
    if meta.encryption in (False, True) and meta.compression is False:
        return data
    if data[:1] != b'"':
        raise _error(wire, "invalid", "A compressed or encrypted payload must be a string.", "payload")
    payload: str | bytes = _json_decoder.decode(data)
    if meta.encryption == "fernet":
        payload = _decrypt(wire, payload, payload_key())
    elif meta.encryption not in (False, True):
        raise _error(wire, "invalid", "metadata.encryption must be false, true or \"fernet\".", "metadata.encryption")
    if meta.compression == "gzip":
        payload = _gunzip(wire, payload)
    elif meta.compression is not False:
        raise _error(wire, "invalid", "metadata.compression must be false or \"gzip\".", "metadata.compression")
    return (payload.encode() if isinstance(payload, str) else payload).strip()


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


def _holds_nul(value: Any) -> bool:
    """Whether any string (or key) holds NUL, which PostgreSQL text and jsonb cannot store. Not recursive:
    a payload may be nested as deep as the decoder allowed."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


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


def parse_control(raw: bytes) -> ControlPayload:
    """A bare control payload, as `POST /api/v1/device/commands/<id>/ack/` receives it."""
    try:
        return _typed("control", raw)[0]
    except msgspec.ValidationError as exc:
        raise _invalid(exc, None) from None
    except msgspec.DecodeError as exc:
        raise EnvelopeError("invalid", f"Body is not valid JSON: {exc}") from None
