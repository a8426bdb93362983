"""Score and recommendation from crafted health data and the server's pings; profiles; observed switches."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import CameraClient
from devices import connectivity, watch
from devices.models import Device, ProtocolSwitch
from tests.devices.conftest import wait_until
from tests.factories import envelope
from transport import pipeline

pytestmark = pytest.mark.django_db(transaction=True)


def _health(device, via: str = "rest", **network) -> None:
    payload = {"cpu_percent": 10, "network": network}
    assert pipeline.ingest(envelope(device.id, "health", payload), device, via).status == "accepted"


@pytest.mark.parametrize(
    "network, score, recommended",
    [
        ({"latency_ms": 40, "packet_loss": 0.0, "bandwidth_kbps": 5000, "uptime_percent": 100}, 1.0, "websocket"),
        ({"latency_ms": 240, "packet_loss": 0.02, "bandwidth_kbps": 1600, "uptime_percent": 80}, 0.8, "websocket"),
        ({"latency_ms": 250, "packet_loss": 0.02, "bandwidth_kbps": 1600, "uptime_percent": 80}, 0.797, "rest"),
        ({"latency_ms": 525, "packet_loss": 0.05, "bandwidth_kbps": 1000, "uptime_percent": 50}, 0.5, "rest"),
        ({"latency_ms": 525, "packet_loss": 0.06, "bandwidth_kbps": 1000, "uptime_percent": 50}, 0.47, "mqtt"),
        ({"latency_ms": 2000, "packet_loss": 0.5}, 0.0, "mqtt"),
        ({"latency_ms": 50}, 1.0, "websocket"),  # one factor measured: the others' weights are left out
    ],
)
def test_score_and_recommendation_follow_the_contract_thresholds(make_device, network, score, recommended):
    device = make_device()
    _health(device, **network)
    rec = connectivity.recommend(device)
    assert (rec.score, rec.recommended) == (score, recommended)
    served = CameraClient(device).get("/api/v1/device/protocol/").json()
    assert (served["score"], served["recommended"]) == (score, recommended)


def test_the_servers_own_ping_counts_when_fresh(make_device):
    device = make_device()
    _health(device, latency_ms=40, packet_loss=0.0, bandwidth_kbps=5000, uptime_percent=100)
    device.measured_latency_ms, device.measured_latency_at = 1000.0, timezone.now()
    rec = connectivity.recommend(device)
    assert (rec.score, rec.recommended, rec.factors["latency"]) == (0.7, "rest", 0.0)
    device.measured_latency_at = timezone.now() - timedelta(seconds=connectivity.MEASURED_FRESH_S + 1)
    assert connectivity.recommend(device).recommended == "websocket"


@pytest.mark.parametrize(
    "profile, score, current, recommended",
    [
        ("urban", 0.9, "", "websocket"),
        ("suburban", 0.9, "", "rest"),
        ("suburban", 0.3, "", "mqtt"),
        ("rural", 0.95, "", "mqtt"),
        ("mobile", 0.78, "websocket", "websocket"),  # within the hysteresis: keep it while moving
        ("mobile", 0.74, "websocket", "rest"),
        ("mobile", 0.82, "rest", "rest"),
        ("mobile", 0.86, "rest", "websocket"),
        ("urban", 0.78, "websocket", "rest"),  # no hysteresis for a fixed camera
    ],
)
def test_the_profile_sets_where_the_recommendation_starts(profile, score, current, recommended):
    assert connectivity.protocol_for(score, profile, current) == recommended


@pytest.mark.slow
def test_a_changed_recommendation_is_stored_and_pushed_once(make_device, ws_cameras):
    device = make_device()
    cam = ws_cameras(device)
    cursor = watch.Cursor()
    _health(device, latency_ms=40, packet_loss=0.0, bandwidth_kbps=5000, uptime_percent=100)
    watch.tick(cursor)
    assert cam.wait_frame("protocol")["recommended"] == "websocket"
    _health(device, latency_ms=600, packet_loss=0.04, bandwidth_kbps=900, uptime_percent=90)
    watch.tick(cursor)
    wait_until(lambda: len(cam.of_type("protocol")) == 2, what="the new recommendation")
    _health(device, latency_ms=610, packet_loss=0.04, bandwidth_kbps=900, uptime_percent=90)
    watch.tick(cursor)
    stored = Device.objects.get(pk=device.pk)
    assert stored.recommended_protocol == "rest" and 0.5 <= stored.connectivity_score < 0.8
    pings = len(cam.of_type("ping"))
    wait_until(lambda: len(cam.of_type("ping")) > pings, what="a ping after the last pass")  # a push would be in
    assert [f["recommended"] for f in cam.of_type("protocol")] == ["websocket", "rest"]


def test_switches_reported_by_the_camera_and_seen_by_the_server_are_stored(make_device):
    device = make_device()
    cursor = watch.Cursor()
    _health(device, via="websocket", latency_ms=40)
    watch.tick(cursor)
    at = timezone.now().isoformat()
    report = {"from": "websocket", "to": "rest", "reason": "connection lost", "at": at, "score": 0.4, "recommended": "mqtt"}
    env = envelope(device.id, "health", {"cpu_percent": 5, "transport": "rest", "protocol_switches": [report]})
    assert pipeline.ingest(env, device, "rest").status == "accepted"
    watch.tick(cursor)
    watch.tick(cursor)  # the next pass sees the same rows again (look-back): nothing is stored twice
    rows = list(ProtocolSwitch.objects.filter(device=device).order_by("source"))
    assert [(s.source, s.from_transport, s.to_transport, s.reason) for s in rows] == [
        ("device", "websocket", "rest", "connection lost"),
        ("server", "websocket", "rest", "connection lost"),
    ]
    assert (rows[0].score, rows[0].recommended) == (0.4, "mqtt")
    assert connectivity.record_reported_switches(device.id, [report]) == 0  # repeated in the next heartbeat


def test_a_backlog_stored_after_the_camera_moved_on_is_not_a_switch_back(make_device):
    """A camera hands its backlog to the broker, moves to WebSocket, and the bridge stores the backlog's tail
    after the first WebSocket messages: the camera is on WebSocket, and stays so when only the tail arrives."""
    device = make_device()
    cursor = watch.Cursor()
    t0 = timezone.now() - timedelta(seconds=30)

    def stored(via: str, sent_s: float) -> None:
        sent = (t0 + timedelta(seconds=sent_s)).isoformat().replace("+00:00", "Z")
        assert pipeline.ingest(envelope(device.id, timestamp=sent, protocol=via), device, via).status == "accepted"

    stored("mqtt", 0)
    watch.tick(cursor)
    for s in (20, 21):  # live, over the new transport
        stored("websocket", s)
    for s in (10, 11):  # the backlog's tail, sent earlier, stored later
        stored("mqtt", s)
    watch.tick(cursor)
    stored("mqtt", 12)
    watch.tick(cursor)
    switches = ProtocolSwitch.objects.filter(device=device, source="server").order_by("at")
    assert [(s.from_transport, s.to_transport) for s in switches] == [("mqtt", "websocket")]
    assert Device.objects.get(pk=device.pk).observed_transport == "websocket"


def test_changing_the_profile_changes_the_recommendation_at_once(make_device, downlink_to):
    from devices import configuration

    device = make_device()
    _health(device, latency_ms=40, packet_loss=0.0, bandwidth_kbps=5000, uptime_percent=100)
    connectivity.refresh({device.id})
    assert Device.objects.get(pk=device.pk).recommended_protocol == "websocket"
    configuration.set_desired(device, {}, profile="suburban")
    assert Device.objects.get(pk=device.pk).recommended_protocol == "rest"


def test_refreshing_many_devices_costs_the_same_few_queries_as_one(make_device, django_assert_num_queries):
    """The watch loop refreshes every device that reported in the last second: with a fleet, a query per device
    each pass was most of the loop's work. Each device's newest report still decides (an older one does not)."""
    devices = [make_device() for _ in range(6)]
    for n, device in enumerate(devices):
        _health(device, latency_ms=900, packet_loss=0.0)  # older: would say rest
        _health(device, latency_ms=40 + n, packet_loss=0.0, bandwidth_kbps=5000, uptime_percent=100)
    connectivity.refresh({d.id for d in devices})
    stored = Device.objects.filter(id__in=[d.id for d in devices]).values_list("recommended_protocol", "connectivity_score")
    assert list(stored) == [("websocket", 1.0)] * len(devices)
    with django_assert_num_queries(2):  # the devices with their newest report's id, then those reports
        assert connectivity.refresh({d.id for d in devices}) == []
