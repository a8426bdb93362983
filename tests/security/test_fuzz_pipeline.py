"""Hypothesis against the one write path: batches of hostile envelopes from several devices go through
`pipeline.ingest_batch` on PostgreSQL. Each gets an ack the contract knows, and the database holds exactly
the accepted ones, each with its rows: nothing half-written, nothing crashed.
"""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from detections.models import Detection
from devices.models import HealthLog, ReportedConfig
from tests.factories import DeviceFactory
from transport import pipeline
from transport.models import Message

from . import strategies as fz

pytestmark = pytest.mark.django_db
ROWS = {"detection": Detection, "health": HealthLog, "config": ReportedConfig}


def counts() -> dict[str, int]:
    return {"ledger": Message.objects.count(), **{t: model.objects.count() for t, model in ROWS.items()}}


@pytest.fixture
def cameras(settings):
    settings.DEVICE_RATE_BURST = 10**6  # the rate limit is tested elsewhere; here it would only hide input
    first, second = DeviceFactory(rate_limit_per_s=1e6), DeviceFactory(rate_limit_per_s=1e6)
    return first, second


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(data=st.data())
def test_any_batch_is_acked_item_by_item_and_stored_whole_or_not_at_all(cameras, data):
    first, second = cameras
    keys = {d.id: d.issued.payload_key.encode() for d in cameras}
    items = []
    for _ in range(data.draw(st.integers(1, 6))):
        device = data.draw(st.sampled_from(cameras))
        claimed = data.draw(st.sampled_from([device.id, device.id, first.id, second.id]))  # sometimes a spoof
        env = data.draw(fz.envelopes(keys[device.id], device_id=claimed))
        items.append(pipeline.Inbound(fz.dumps(env), device, data.draw(st.sampled_from(["rest", "websocket", "mqtt"]))))
    before = counts()

    acks = pipeline.ingest_batch(items)

    assert len(acks) == len(items)
    assert {a.status for a in acks} <= {pipeline.ACCEPTED, pipeline.DUPLICATE, pipeline.REJECTED}
    for a in acks:
        event(a.status)
    accepted = [(a, i) for a, i in zip(acks, items) if a.status == pipeline.ACCEPTED]
    after = counts()
    assert after["ledger"] - before["ledger"] == len(accepted)
    ids = [a.message_id for a, _ in accepted]
    stored = dict(Message.objects.filter(message_id__in=ids).values_list("message_id", "data_type"))
    for data_type, model in ROWS.items():
        expected = [m for m, t in stored.items() if t == data_type]
        assert model.objects.filter(message_id__in=expected).count() == len(expected), data_type
    for ack in acks:
        if ack.status == pipeline.REJECTED:
            assert ack.error in ("invalid", "forbidden", "too_large") and ack.detail


def test_nul_characters_anywhere_are_refused_not_a_crash(cameras):
    """Found by the test above: PostgreSQL refuses NUL in text and jsonb, and the whole batch failed (a 500)."""
    from tests.factories import envelope

    device = cameras[0]
    bodies = [envelope(device.id, payload={"plate": "AB\u0000CD", "confidence": 0.9}),
              envelope(device.id, payload={"plate": "AB1CD", "confidence": 0.9, "note": {"x": ["\u0000"]}}),
              envelope(device.id, "health", payload={"firmware": "1.0\u0000"})]  # fmt: skip
    good = envelope(device.id)
    acks = pipeline.ingest_batch([pipeline.Inbound(fz.dumps(b), device, "rest") for b in [*bodies, good]])
    assert [(a.status, a.error) for a in acks] == [("rejected", "invalid")] * 3 + [("accepted", None)]
    assert Message.objects.filter(device=device).count() == 1
    sealed = Fernet(device.issued.payload_key.encode()).encrypt(b'{"plate": "A\\u0000", "confidence": 1}').decode()
    encrypted = envelope(device.id, payload=sealed, metadata={"encryption": "fernet"})
    assert pipeline.ingest(fz.dumps(encrypted), device, "rest").error == "invalid"
