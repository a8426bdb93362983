"""One online/offline model across transports: sockets, MQTT status and last will, recent messages."""

import time

import pytest

from devices import channels, online
from devices.models import Device, PresenceChange
from tests.devices.conftest import wait_until
from tests.factories import envelope
from transport import pipeline

pytestmark = pytest.mark.django_db(transaction=True)


def _online(device) -> bool:
    return Device.objects.values_list("online", flat=True).get(pk=device.pk)


def _changes(device) -> list[tuple[bool, str]]:
    return [(c.online, c.transport) for c in PresenceChange.objects.filter(device=device).order_by("at", "id")]


@pytest.fixture
def announced():
    """What the presence model broadcast (the hooks transport/apps.py registers, recorded instead)."""
    calls: list[tuple] = []
    saved = dict(channels._hooks)
    channels.register_hook("device_status", lambda *args: calls.append(("device_status", *args)))
    channels.register_hook("alert", lambda device_id, **fields: calls.append(("alert", device_id, fields["kind"])))
    yield calls
    channels._hooks.clear()
    channels._hooks.update(saved)


@pytest.mark.slow
def test_a_camera_whose_mqtt_client_dies_is_offline_within_5_seconds(make_device, bridge, watcher, camera_process):
    device = make_device()
    watcher()
    camera = camera_process(device.id)
    wait_until(lambda: _online(device), 10, what="online from the MQTT status")
    camera.kill()  # no DISCONNECT: the broker publishes the last will
    wait_until(lambda: not _online(device), 5, every=0.05, what="offline after the last will")
    assert _changes(device) == [(True, "mqtt"), (False, "mqtt")]
    assert "last will" in PresenceChange.objects.filter(device=device, online=False).get().reason


def test_a_rest_camera_goes_offline_after_the_timeout_and_raises_an_alert(make_device, settings, announced):
    settings.DEVICE_OFFLINE_AFTER_S = 0.5
    device = make_device()
    assert pipeline.ingest(envelope(device.id, "health"), device, "rest").status == "accepted"
    online.evaluate()
    assert _online(device)
    time.sleep(0.6)
    online.evaluate()
    assert not _online(device)
    assert _changes(device) == [(True, "rest"), (False, "rest")]
    assert [c for c in announced if c[1] == device.id] == [
        ("device_status", device.id, True, "rest", f"message over rest at {Device.objects.get(pk=device.pk).last_seen_at.isoformat()}"),
        ("device_status", device.id, False, "rest", "nothing heard for 0.5 s"),
        ("alert", device.id, "device_offline"),
    ]  # fmt: skip


@pytest.mark.slow
def test_closing_the_websocket_is_offline_at_once_despite_a_recent_message(make_device, ws_cameras):
    device = make_device()
    cam = ws_cameras(device)
    cam.send_envelope("health", {"cpu_percent": 3})
    online.evaluate()
    assert _online(device)
    cam.close()
    wait_until(lambda: not channels.live_transports(device.id), what="the socket to leave presence")
    online.evaluate()
    assert not _online(device)
    assert _changes(device) == [(True, "websocket"), (False, "websocket")]


def test_a_message_after_the_last_will_brings_the_device_back(make_device):
    from devices.status import record_statuses

    device = make_device()
    record_statuses({device.id: "online"})
    online.evaluate()
    record_statuses({device.id: "offline"})
    online.evaluate()
    assert not _online(device)
    assert pipeline.ingest(envelope(device.id, "detection"), device, "rest").status == "accepted"
    online.evaluate()
    assert _online(device)
    assert _changes(device) == [(True, "mqtt"), (False, "mqtt"), (True, "rest")]


def test_nothing_changes_while_presence_holds(make_device):
    device = make_device()
    pipeline.ingest(envelope(device.id, "health"), device, "rest")
    assert len(online.evaluate()) == 1
    assert online.evaluate() == []
    assert len(_changes(device)) == 1


@pytest.mark.slow
def test_the_watch_command_stops_cleanly_on_sigterm(watcher):
    import signal

    proc = watcher()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
