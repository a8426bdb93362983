"""The objects ingest makes for every message are left out of garbage collection.

A REST batch or an MQTT burst holds a thousand messages' objects at once; each
one the collector tracks counts towards its next collection, and every
collection walks all of them. Decoded JSON cannot form reference cycles, so
the envelope, its payload and what the pipeline wraps around them are made
untracked (`gc=False` structs).
"""

import gc
import json

import pytest

from tests.factories import envelope
from transport import announce, envelope as wire, pipeline
from transport.pipeline import Inbound

pytestmark = pytest.mark.django_db

DETECTION = {"plate": "AB123CD", "confidence": 0.9, "region": "de", "bbox": {"x": 1, "y": 2, "w": 3, "h": 4},
             "vehicle": {"type": "car"}, "candidates": [{"plate": "A8123CD", "confidence": 0.5}]}  # fmt: skip


def test_a_parsed_envelope_and_its_payload_are_untracked():
    parsed = wire.parse(json.dumps(envelope("cam-1", payload=DETECTION)).encode())

    assert parsed.payload.plate == "AB123CD" and parsed.payload.bbox.w == 3
    for obj in (parsed, parsed.payload, parsed.payload.bbox, parsed.payload.candidates[0]):
        assert not gc.is_tracked(obj), obj


def test_a_payload_without_candidates_allocates_no_container_for_them():
    parsed = wire.parse(json.dumps(envelope("cam-1", payload={"plate": "AB123CD", "confidence": 0.9})).encode())

    assert parsed.payload.candidates == ()
    assert not gc.is_tracked(parsed.payload.candidates)


def test_what_the_pipeline_makes_per_message_is_untracked(make_device, monkeypatch, django_capture_on_commit_callbacks):
    device = make_device(rate_limit_per_s=1e6)
    seen = []
    monkeypatch.setattr(announce, "consumers", [*announce.consumers, seen.extend])
    items = [Inbound(json.dumps(envelope(device.id, payload=DETECTION)).encode(), device, "ws") for _ in range(3)]

    with django_capture_on_commit_callbacks(execute=True):
        acks = pipeline.ingest_batch(items)

    assert [ack.status for ack in acks] == [pipeline.ACCEPTED] * 3
    assert len(seen) == 3 and all(s.passage_id for s in seen)
    for obj in (*items, *acks, *seen, *(s.envelope for s in seen)):
        assert not gc.is_tracked(obj), obj


def test_a_received_mqtt_message_is_untracked():
    from transport.mqtt.client import Received

    received = Received("lpr/v1/devices/cam-1/up/detection", b"{}", mid=7, qos=1, retain=False, generation=1)

    assert received.mid == 7 and not gc.is_tracked(received)
