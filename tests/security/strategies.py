"""Hypothesis strategies for hostile camera input: JSON of any shape, and bodies shaped like what a parser
expects, with every value drawn from a mix of the plausible and the nasty (huge numbers, NaN, "inf",
NUL characters, wrong types)."""

from __future__ import annotations

import base64
import gzip
import json
import uuid

from hypothesis import strategies as st

NASTY_TEXT = st.sampled_from([
    "", " ", "inf", "-inf", "nan", "NaN", "Infinity", "1e999", "-1e999", "9" * 400, "0x10", "1_000", "٣", "１２",
    "\x00", "a\x00b", "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"), "💥" * 40, "null",
    "true", "2026-13-45T99:99:99Z", "2026-11-26T10:30:00", "2026-11-26T10:30:00+25:00", "-1", "1e-400", "%",
    "<x/>", "]]>", "&amp;", "\u202e", "A" * 300,
])  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), NASTY_TEXT,
)  # fmt: skip
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=30), NASTY_TEXT),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)),
    max_leaves=20,
)  # fmt: skip


def value(*plausible) -> st.SearchStrategy:
    """A field's value: one of the plausible ones, or anything at all."""
    return st.one_of(st.sampled_from(plausible), SCALARS, JSON) if plausible else st.one_of(SCALARS, JSON)


def shaped(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """A dict with some of `fields` (each drawn from its strategy) and now and then an unknown one."""
    return st.fixed_dictionaries({}, optional=fields).flatmap(
        lambda d: st.dictionaries(st.text(max_size=10), JSON, max_size=2).map(lambda extra: {**extra, **d})
    )


def dumps(obj) -> bytes:
    """JSON as cameras send it; Python's own NaN/Infinity and huge integers included (msgspec must cope)."""
    return json.dumps(obj, allow_nan=True).encode()


# --- the envelope ------------------------------------------------------------------------------------------

DEVICE_ID = "CAM001"
VALID_PAYLOADS = {
    "detection": {"plate": "AB123CD", "confidence": 0.93},
    "health": {"cpu_percent": 12.5},
    "config": {"version": 3, "values": {"fps": 15}},
    "control": {"command_id": "0b8f3c5e-3f0e-4c36-9d2e-6d3f3a1e2b10", "status": "done"},
}
PAYLOAD_FIELDS = {
    "plate": value("AB123CD", "", "X" * 40), "confidence": value(0.93, 0, 1, 1.5, -0.1),
    "region": value("de", "us-ca"), "candidates": value([{"plate": "AB123CE", "confidence": 0.5}], [{"plate": ""}]),
    "bbox": value({"x": 1, "y": 2, "w": 3, "h": 4}, {"x": 1, "y": 2, "w": -3, "h": 4}),
    "vehicle": value({"type": "car", "make": "VW"}), "direction": value("approaching", 90, 400, "sideways"),
    "speed_kph": value(50, -1), "lane": value(2), "image_ref": value(str(uuid.uuid4()), "not-a-uuid"),
    "cpu_percent": value(10, 101), "network": value({"latency_ms": 30, "packet_loss": 2}),
    "queue_depth": value(3, -3, 2**70), "firmware": value("1.2.3", "F" * 200),
    "version": value(3, -1), "values": value({"fps": 15}, [1]),
    "command_id": value(str(uuid.uuid4())), "status": value("done", "exploded"), "result": value({}), "error": value("x"),
}  # fmt: skip
ENVELOPE_FIELDS = {
    "message_id": value("not-a-uuid", "", str(uuid.uuid4()).upper()),
    "timestamp": value("2999-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "2026-11-26T10:30:00", "9999-12-31T23:59:59Z"),
    "protocol": value("websocket", "carrier-pigeon"),
    "edge_device_id": value("", "X" * 65, "CAM002"),
    "data_type": value("image", "DETECTION"),
    "payload": value(),
    "metadata": value({"protocol_version": "2.0"}, {"compression": "zstd"}, {"encryption": "rot13"}),
    "sequence": value(-1, 2**64, 1.5),
}  # fmt: skip


@st.composite
def mutated(draw, base: dict, fields: dict[str, st.SearchStrategy], at_most: int) -> dict:
    """`base` with up to `at_most` fields replaced by hostile values, and maybe one removed."""
    out = dict(base)
    count = draw(st.sampled_from([0, 0, *range(1, at_most + 1)]))  # untouched often enough to get deep inside
    for name in draw(st.sets(st.sampled_from(sorted(fields)), min_size=count, max_size=count)):
        out[name] = draw(fields[name])
    if out and draw(st.booleans()) and draw(st.booleans()):
        del out[draw(st.sampled_from(sorted(out)))]
    return out


@st.composite
def wrapped_payload(draw, payload: dict, payload_key: bytes) -> tuple[object, dict]:
    """The payload as sent: a dict, or gzip and/or Fernet as the contract allows, or a broken version of those."""
    from cryptography.fernet import Fernet

    raw = dumps(payload)
    how = draw(st.sampled_from(["plain", "plain", "gzip", "fernet", "both", "bad_base64", "truncated_gzip", "bomb",
                                "wrong_key", "not_json_inside"]))  # fmt: skip
    if how == "plain":
        return payload, {"protocol_version": "1.0", "compression": False, "encryption": False}
    if how == "gzip":
        return base64.b64encode(gzip.compress(raw)).decode(), {"compression": "gzip"}
    if how == "fernet":
        return Fernet(payload_key).encrypt(raw).decode(), {"encryption": "fernet"}
    if how == "both":
        inner = base64.b64encode(gzip.compress(raw))
        return Fernet(payload_key).encrypt(inner).decode(), {"compression": "gzip", "encryption": "fernet"}
    if how == "bad_base64":
        return draw(st.text(max_size=50)), {"compression": "gzip"}
    if how == "truncated_gzip":
        blob = gzip.compress(raw)
        return base64.b64encode(blob[: draw(st.integers(0, len(blob) - 1))]).decode(), {"compression": "gzip"}
    if how == "bomb":
        return BOMB, {"compression": "gzip"}
    if how == "not_json_inside":
        return base64.b64encode(gzip.compress(draw(st.binary(max_size=40)))).decode(), {"compression": "gzip"}
    return Fernet(Fernet.generate_key()).encrypt(raw).decode(), {"encryption": "fernet"}


BOMB = base64.b64encode(gzip.compress(b'{"a": "' + b"0" * 2_000_000 + b'"}')).decode()


@st.composite
def envelopes(draw, payload_key: bytes, device_id: str = DEVICE_ID) -> dict:
    """Mostly well-formed envelopes of every data type, each with a few hostile fields."""
    data_type = draw(st.sampled_from(sorted(VALID_PAYLOADS)))
    payload = draw(mutated(VALID_PAYLOADS[data_type], PAYLOAD_FIELDS, 3))
    wrapped, metadata = draw(wrapped_payload(payload, payload_key))
    message_id = draw(st.one_of(st.builds(uuid.uuid4), st.builds(uuid.uuid4), st.uuids()))  # now and then a repeat
    base = {"message_id": str(message_id), "timestamp": "2026-11-26T10:30:00.123Z", "protocol": "rest",
            "edge_device_id": device_id, "data_type": data_type, "payload": wrapped, "metadata": metadata}  # fmt: skip
    return draw(mutated(base, ENVELOPE_FIELDS, 2))


def raw_inputs(payload_key: bytes) -> st.SearchStrategy:
    """What reaches the decoder: envelopes as JSON, any JSON, any bytes, and envelopes cut short."""
    return st.one_of(
        envelopes(payload_key).map(dumps),
        JSON.map(dumps),
        st.binary(max_size=200),
        st.tuples(envelopes(payload_key).map(dumps), st.integers(0, 400)).map(lambda t: t[0][: t[1]]),
    )
