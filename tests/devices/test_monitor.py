"""The communication monitor's figures on a known mix of traffic in the ledger."""

import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from devices import monitor
from tests.factories import OperatorFactory
from transport.models import Message, RejectedMessage

pytestmark = pytest.mark.django_db


def _accepted(device, via: str, latency_ms: float, sequence=None, ago=timedelta(minutes=5)) -> None:
    received = timezone.now() - ago
    Message.objects.create(
        message_id=uuid.uuid4(), device=device, data_type="detection", received_via=via, protocol=via,
        sequence=sequence, sent_at=received - timedelta(milliseconds=latency_ms), received_at=received,
        latency_ms=latency_ms,
    )  # fmt: skip


def _rejected(device, via: str) -> None:
    RejectedMessage.objects.create(device=device, transport=via, error="invalid", detail="bad")


@pytest.fixture
def mix(make_device):
    a, b = make_device(), make_device()
    for latency, seq in ((10, 1), (20, 2), (30, 3), (40, 5)):  # sequence 4 never arrived
        _accepted(a, "rest", latency, seq)
    _accepted(a, "mqtt", 100, 6)
    _accepted(a, "mqtt", 200, 6)  # the same sequence number under another message_id
    _rejected(a, "rest")
    for latency in (5, 5, 50):
        _accepted(b, "websocket", latency)
    _rejected(b, "mqtt")
    _rejected(None, "rest")  # bad credentials: no device
    _rejected(None, "rest")
    _accepted(a, "rest", 9999, 0, ago=timedelta(hours=2))  # outside the window
    old = RejectedMessage.objects.create(device=b, transport="websocket", error="invalid")
    RejectedMessage.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(hours=2))
    return a, b


def test_per_protocol_share_success_and_latency(mix):
    figures = {via: vars(f) for via, f in monitor.by_protocol(timedelta(hours=1)).items()}
    assert figures == {
        "rest": {"messages": 7, "accepted": 4, "rejected": 3, "share": 0.5385, "success_rate": 0.5714,
                 "avg_latency_ms": 25.0, "p95_latency_ms": 38.5},
        "mqtt": {"messages": 3, "accepted": 2, "rejected": 1, "share": 0.2308, "success_rate": 0.6667,
                 "avg_latency_ms": 150.0, "p95_latency_ms": 195.0},
        "websocket": {"messages": 3, "accepted": 3, "rejected": 0, "share": 0.2308, "success_rate": 1.0,
                      "avg_latency_ms": 20.0, "p95_latency_ms": 45.5},
    }  # fmt: skip


def test_per_device_figures_with_sequence_gaps_and_repeats(mix):
    a, b = mix
    figures = monitor.by_device(timedelta(hours=1))
    assert set(figures) == {a.id, b.id}
    first = figures[a.id]
    assert first["all"] == {"messages": 7, "accepted": 6, "rejected": 1, "share": round(7 / 13, 4),
                            "success_rate": round(6 / 7, 4), "avg_latency_ms": 66.667, "p95_latency_ms": 175.0}  # fmt: skip
    assert (first["protocols"]["rest"]["share"], first["protocols"]["mqtt"]["share"]) == (0.7143, 0.2857)
    assert (first["sequence_gaps"], first["sequence_repeats"]) == (1, 1)
    second = figures[b.id]
    assert (second["all"]["messages"], second["all"]["success_rate"], second["sequence_gaps"]) == (4, 0.75, 0)
    assert second["protocols"]["mqtt"] == {"messages": 1, "accepted": 0, "rejected": 1, "share": 0.25,
                                           "success_rate": 0.0, "avg_latency_ms": None, "p95_latency_ms": None}  # fmt: skip


def test_stats_are_served_to_operators(mix):
    client = Client()
    client.force_login(OperatorFactory())
    body = client.get("/api/v1/stats/protocols/", {"window": "1h"}).json()
    assert body["window_s"] == 3600
    assert body["protocols"]["rest"]["p95_latency_ms"] == 38.5
    devices = client.get("/api/v1/stats/devices/", {"window": "1h", "device": mix[0].id}).json()["devices"]
    assert list(devices) == [mix[0].id]
    narrow = client.get("/api/v1/stats/protocols/", {"window": "1m"}).json()["protocols"]
    assert set(narrow) == {"rest", "mqtt"}  # only the rejects are that recent
    assert narrow["rest"]["accepted"] == 0
    bad = client.get("/api/v1/stats/protocols/", {"window": "forever"})
    assert (bad.status_code, bad.json()["error"], bad.json()["field"]) == (400, "invalid", "window")


def test_figures_of_traffic_that_went_through_the_pipeline(make_device):
    from datetime import datetime, timezone as tz

    from tests.factories import envelope
    from transport import pipeline

    device = make_device()

    def sent(ms_ago: int) -> str:
        return (datetime.now(tz.utc) - timedelta(milliseconds=ms_ago)).isoformat()

    for ms in (1000, 2000, 3000):
        assert pipeline.ingest(envelope(device.id, timestamp=sent(ms)), device, "rest").status == "accepted"
    for ms in (500, 500):
        assert pipeline.ingest(envelope(device.id, timestamp=sent(ms)), device, "mqtt").status == "accepted"
    again = envelope(device.id, timestamp=sent(100))
    pipeline.ingest(again, device, "websocket")
    assert pipeline.ingest(again, device, "rest").status == "duplicate"  # not a new message, not a failure
    assert pipeline.ingest(b"{not json", device, "rest").status == "rejected"
    figures = monitor.by_protocol(timedelta(minutes=5))
    rest, mqtt = figures["rest"], figures["mqtt"]
    assert (rest.accepted, rest.rejected, rest.share, rest.success_rate) == (3, 1, 0.5714, 0.75)
    assert (mqtt.accepted, mqtt.share, figures["websocket"].share) == (2, 0.2857, 0.1429)
    assert 2000 <= rest.avg_latency_ms < 2500 and 2900 <= rest.p95_latency_ms < 3400
    device_figures = monitor.by_device(timedelta(minutes=5), [device.id])[device.id]
    assert (device_figures["all"]["messages"], device_figures["sequence_gaps"]) == (7, 0)
