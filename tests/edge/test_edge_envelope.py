from __future__ import annotations

import base64
import gzip
import json
import re
import uuid
from datetime import datetime

import pytest
from cryptography.fernet import Fernet

from edge.envelope import SequenceCounter, build_envelope, decode_payload, encode_payload

PAYLOAD = {"plate": "AB123CD", "confidence": 0.93, "candidates": [{"plate": "A8123CD",
                                                                   "confidence": 0.5}]}


def test_envelope_has_every_contract_field() -> None:
    env = build_envelope(device_id="CAM001", data_type="detection", payload=PAYLOAD,
                         protocol="websocket", sequence=7)
    assert set(env) == {"message_id", "timestamp", "protocol", "edge_device_id", "data_type",
                        "payload", "metadata", "sequence"}
    assert uuid.UUID(env["message_id"]).version == 4
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", env["timestamp"])
    assert datetime.fromisoformat(env["timestamp"].replace("Z", "+00:00")).tzinfo is not None
    assert env["metadata"] == {"protocol_version": "1.0", "compression": False,
                               "encryption": False}
    assert env["payload"] == PAYLOAD and env["sequence"] == 7
    assert json.loads(json.dumps(env)) == env


def test_unknown_data_type_or_protocol_is_refused() -> None:
    with pytest.raises(ValueError):
        build_envelope(device_id="C", data_type="video", payload={}, protocol="rest")
    with pytest.raises(ValueError):
        build_envelope(device_id="C", data_type="health", payload={}, protocol="http")


def test_gzip_payload_is_base64_of_gzipped_json_and_round_trips() -> None:
    body, meta = encode_payload(PAYLOAD, compression=True)
    assert meta["compression"] == "gzip" and meta["encryption"] is False
    assert json.loads(gzip.decompress(base64.b64decode(body))) == PAYLOAD
    assert decode_payload(body, meta) == PAYLOAD


def test_fernet_payload_round_trips_only_with_the_key() -> None:
    key = Fernet.generate_key().decode()
    body, meta = encode_payload(PAYLOAD, payload_key=key)
    assert meta["encryption"] == "fernet" and isinstance(body, str)
    assert json.loads(Fernet(key).decrypt(body.encode())) == PAYLOAD
    assert decode_payload(body, meta, key) == PAYLOAD
    with pytest.raises(Exception):
        decode_payload(body, meta, Fernet.generate_key())


def test_compression_is_applied_before_encryption() -> None:
    key = Fernet.generate_key()
    env = build_envelope(device_id="CAM001", data_type="detection", payload=PAYLOAD,
                         protocol="mqtt", compression=True, payload_key=key)
    assert env["metadata"]["compression"] == "gzip"
    assert env["metadata"]["encryption"] == "fernet"
    inner = Fernet(key).decrypt(env["payload"].encode())  # decrypt first ...
    assert json.loads(gzip.decompress(base64.b64decode(inner))) == PAYLOAD  # ... then gunzip
    assert decode_payload(env["payload"], env["metadata"], key) == PAYLOAD


def test_sequence_increases_per_device_and_survives_reopen(tmp_path) -> None:
    path = str(tmp_path / "seq.sqlite")
    counter = SequenceCounter.open(path)
    assert [counter.next("A") for _ in range(3)] == [1, 2, 3]
    assert counter.next("B") == 1
    counter._conn.close()
    reopened = SequenceCounter.open(path)
    assert reopened.current("A") == 3
    assert reopened.next("A") == 4
