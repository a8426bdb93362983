"""The envelope decoder alone: no database, no transport."""

import base64
import gzip
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.fernet import Fernet

from tests.factories import envelope
from transport.envelope import MAX_BYTES, EnvelopeError, parse


def raw(env: dict) -> bytes:
    return json.dumps(env).encode()


def test_valid_detection_parses_into_typed_values_and_keeps_unknown_payload_fields():
    env = envelope("CAM001", payload={"plate": "ab-123 cd", "confidence": 0.9, "colour_hint": "red", "bbox": {"x": 1, "y": 2, "w": 3, "h": 4}})
    env["sequence"] = 7
    env["unknown_top_level"] = "ignored"
    parsed = parse(raw(env))
    assert parsed.message_id == uuid.UUID(env["message_id"])
    assert parsed.device_id == "CAM001"
    assert parsed.payload.plate == "ab-123 cd"
    assert parsed.payload.bbox.w == 3
    assert parsed.sequence == 7
    assert parsed.extra == {"colour_hint": "red"}
    assert parsed.timestamp.tzinfo is not None


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda e: e.pop("message_id"), "message_id"),
        (lambda e: e.update(message_id="not-a-uuid"), "message_id"),
        (lambda e: e.update(data_type="telemetry"), "data_type"),
        (lambda e: e.update(protocol="carrier-pigeon"), "protocol"),
        (lambda e: e["payload"].update(confidence="high"), "payload.confidence"),
        (lambda e: e["payload"].update(confidence=1.5), "payload.confidence"),
        (lambda e: e["payload"].pop("plate"), "payload.plate"),
        (lambda e: e.update(timestamp="2026-11-26T10:30:00"), "timestamp"),
        (lambda e: e.update(timestamp=(datetime.now(timezone.utc) + timedelta(hours=25)).isoformat()), "timestamp"),
        (lambda e: e.update(metadata={"protocol_version": "2.0"}), "metadata.protocol_version"),
        (lambda e: e.update(payload=[1, 2]), "payload"),
    ],
)
def test_bad_envelopes_are_invalid_with_the_field_named(mutate, field):
    env = envelope("CAM001")
    mutate(env)
    with pytest.raises(EnvelopeError) as info:
        parse(raw(env))
    assert info.value.code == "invalid"
    assert info.value.field == field


def test_malformed_json_is_invalid():
    with pytest.raises(EnvelopeError) as info:
        parse(b'{"message_id": ')
    assert info.value.code == "invalid"


def test_oversize_envelope_is_too_large():
    env = envelope("CAM001", payload={"plate": "X", "confidence": 0.5, "pad": "x" * MAX_BYTES})
    with pytest.raises(EnvelopeError) as info:
        parse(raw(env))
    assert info.value.code == "too_large"


def gzipped(payload: dict) -> str:
    return base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()


def test_gzip_payload_decodes():
    env = envelope("CAM001", payload=gzipped({"plate": "GZ1", "confidence": 0.8}))
    env["metadata"]["compression"] = "gzip"
    assert parse(raw(env)).payload.plate == "GZ1"


def test_gzip_bomb_is_refused_without_inflating_it():
    bomb = base64.b64encode(gzip.compress(b'{"plate": "' + b"A" * (50 * MAX_BYTES) + b'"}')).decode()
    env = envelope("CAM001", payload=bomb)
    env["metadata"]["compression"] = "gzip"
    with pytest.raises(EnvelopeError) as info:
        parse(raw(env))
    assert info.value.code == "too_large"


def test_fernet_then_gzip_payload_decodes_with_the_device_key():
    key = Fernet.generate_key()
    token = Fernet(key).encrypt(gzipped({"plate": "SECRET1", "confidence": 0.7}).encode()).decode()
    env = envelope("CAM001", payload=token)
    env["metadata"].update(compression="gzip", encryption="fernet")
    assert parse(raw(env), lambda: key).payload.plate == "SECRET1"


def test_fernet_with_the_wrong_key_is_invalid():
    token = Fernet(Fernet.generate_key()).encrypt(b'{"plate": "X", "confidence": 0.5}').decode()
    env = envelope("CAM001", payload=token)
    env["metadata"]["encryption"] = "fernet"
    with pytest.raises(EnvelopeError) as info:
        parse(raw(env), lambda: Fernet.generate_key())
    assert (info.value.code, info.value.field) == ("invalid", "payload")


def test_encryption_true_means_tls_and_changes_nothing():
    env = envelope("CAM001")
    env["metadata"]["encryption"] = True
    assert parse(raw(env)).payload.plate == "AB123CD"


@pytest.mark.parametrize("data_type", ["health", "config"])
def test_other_data_types_parse(data_type):
    assert parse(raw(envelope("CAM001", data_type))).data_type == data_type


def test_control_payload_needs_a_command_id():
    env = envelope("CAM001", "control", payload={"status": "done"})
    with pytest.raises(EnvelopeError) as info:
        parse(raw(env))
    assert info.value.field == "payload.command_id"


@pytest.mark.parametrize("written", [str.lower, str.upper, lambda text: text.replace("-", "")],
                         ids=["canonical", "upper case", "32 hex digits"])  # fmt: skip
def test_a_message_id_is_acked_in_the_canonical_form_however_it_was_written(written):
    for _ in range(50):
        message_id = uuid.uuid4()
        env = envelope("CAM001")
        env["message_id"] = written(str(message_id))
        assert parse(raw(env)).id_text == str(message_id)
