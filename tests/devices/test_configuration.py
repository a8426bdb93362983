"""Desired configuration reaches the camera on each transport; reports are kept; drift is shown."""

import pytest

from conftest import CameraClient
from devices import configuration
from devices.models import Device, ReportedConfig
from tests.devices.conftest import wait_until
from tests.factories import envelope
from transport import pipeline

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _private_broker(downlink_to):
    """Every desired config is also published retained on MQTT: to our private broker, not the shared one."""


def _report(device, version: int, values: dict, via: str = "rest") -> pipeline.Ack:
    return pipeline.ingest(envelope(device.id, "config", {"version": version, "values": values}), device, via)


@pytest.mark.slow
def test_desired_configuration_is_pushed_on_the_websocket(make_device, ws_cameras, downlink_to):
    device = make_device()
    cam = ws_cameras(device)
    configuration.set_desired(device, {"fps": 20, "zones": [1]}, profile="suburban")
    frame = cam.wait_frame("config")
    assert (frame["version"], frame["values"], frame["profile"]) == (1, {"fps": 20, "zones": [1]}, "suburban")
    assert frame["protocol_order"] == ["rest", "websocket", "mqtt"]


@pytest.mark.slow
def test_desired_configuration_is_retained_on_mqtt_for_a_camera_that_subscribes_later(make_device, mqtt_cameras,
                                                                                         downlink_to):  # fmt: skip
    device = make_device()
    configuration.set_desired(device, {"fps": 8})  # nobody listening yet
    cam = mqtt_cameras(device)
    body = wait_until(lambda: cam.received("config"), what="the retained config")[-1]
    assert (body["version"], body["values"]) == (1, {"fps": 8})
    assert [retain for topic, _, retain in cam.down if topic.endswith("/down/config")][-1] is True


def test_desired_configuration_is_served_on_rest(make_device):
    device = make_device()
    configuration.set_desired(device, {"fps": 12}, version=7, profile="rural")
    body = CameraClient(device).get("/api/v1/device/config/").json()
    assert body == {"version": 7, "values": {"fps": 12}, "profile": "rural", "protocol_order": ["mqtt", "rest", "local"]}


def test_reports_are_kept_and_drift_follows_them(make_device):
    device = make_device()
    assert _report(device, 9, {"fps": 1}).status == "accepted"
    assert configuration.drift(device).differs is False  # no desired configuration set: nothing to drift from
    ReportedConfig.objects.filter(device=device).delete()
    configuration.set_desired(device, {"fps": 12})
    assert configuration.drift(device).differs  # nothing reported yet
    assert _report(device, 1, {"fps": 10}).status == "accepted"
    assert configuration.drift(device).as_dict() == {"desired_version": 1, "reported_version": 1, "drift": True}
    assert _report(device, 1, {"fps": 12}, via="mqtt").status == "accepted"
    assert configuration.drift(device).differs is False
    configuration.set_desired(device, {"fps": 15})
    assert configuration.drift_for([Device.objects.get(pk=device.pk)])[device.id].as_dict() == {
        "desired_version": 2, "reported_version": 1, "drift": True,
    }  # fmt: skip
    assert ReportedConfig.objects.filter(device=device).count() == 2


def test_a_report_older_than_one_already_reported_is_refused(make_device):
    device = make_device()
    assert _report(device, 5, {"fps": 10}).status == "accepted"
    ack = _report(device, 4, {"fps": 9})
    assert (ack.status, ack.error, ack.field) == ("rejected", "invalid", "payload.version")
    batch = pipeline.ingest_batch([
        pipeline.Inbound(envelope(device.id, "config", {"version": 6, "values": {}}), device, "rest"),
        pipeline.Inbound(envelope(device.id, "config", {"version": 5, "values": {}}), device, "rest"),
    ])  # fmt: skip
    assert [a.status for a in batch] == ["accepted", "rejected"]
    assert sorted(ReportedConfig.objects.filter(device=device).values_list("version", flat=True)) == [5, 6]


def test_a_configuration_that_is_not_an_object_or_a_version_that_does_not_grow_is_refused(make_device):
    device = make_device()
    configuration.set_desired(device, {"fps": 12}, version=3)
    for values, version in ([1, 2], None), ("fps=12", None), ({"fps": 1}, 3), ({"fps": 1}, 2):
        with pytest.raises(configuration.ConfigError):
            configuration.set_desired(device, values, version=version)
    device.refresh_from_db()
    assert (device.desired_config_version, device.desired_config) == (3, {"fps": 12})
