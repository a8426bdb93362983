"""The bridge against the shared Mosquitto (127.0.0.1:1883) and PostgreSQL: happy paths, bad input, status, downlink."""

import base64
import json
import subprocess
import sys
import time

import pytest

from detections.models import Detection
from devices import commands
from devices.models import Command, Device, HealthLog, ReportedConfig
from tests.factories import envelope
from transport.models import Message, RejectedMessage

from .conftest import REPO, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("shared_bridge")]


def mqtt_envelope(device_id, data_type="detection", payload=None, **fields):
    return envelope(device_id, data_type, payload, protocol="mqtt", **fields)


def test_each_data_type_over_mqtt_is_stored_and_acked_on_down_ack(device, cameras):
    camera = cameras(device)
    command = commands.issue(device, "reboot")
    sent = [
        mqtt_envelope(device.id, "detection", {"plate": "ab 123-cd", "confidence": 0.9}),
        mqtt_envelope(device.id, "health", {"cpu_percent": 50.0, "firmware": "2.1.0"}),
        mqtt_envelope(device.id, "config", {"version": 7, "values": {"fps": 10}}),
        mqtt_envelope(device.id, "control", {"command_id": str(command.id), "status": "done"}),
    ]
    for env in sent:
        camera.publish(env)

    for env in sent:
        assert camera.wait_ack(env["message_id"]) == {"type": "ack", "message_id": env["message_id"], "status": "accepted"}
    assert Detection.objects.get(device=device).plate_normalized == "AB123CD"
    assert HealthLog.objects.get(device=device).cpu_percent == 50.0
    assert ReportedConfig.objects.get(device=device).version == 7
    assert Command.objects.get(id=command.id).state == "done"
    assert set(Message.objects.filter(device=device).values_list("received_via", flat=True)) == {"mqtt"}
    device.refresh_from_db()
    assert (device.last_transport, device.firmware) == ("mqtt", "2.1.0")


def test_message_id_first_sent_over_rest_is_duplicate_over_mqtt(device, camera, cameras):
    env = mqtt_envelope(device.id)
    assert camera.ingest(env).status_code == 201

    mqtt_camera = cameras(device)
    mqtt_camera.publish(env)

    assert mqtt_camera.wait_ack(env["message_id"])["status"] == "duplicate"
    assert Detection.objects.filter(message_id=env["message_id"]).count() == 1
    assert Message.objects.get(message_id=env["message_id"]).received_via == "rest"


def test_bad_input_is_rejected_recorded_and_answered_and_the_bridge_keeps_going(device, make_device, cameras):
    other = make_device()
    camera = cameras(device)
    gzip_garbage = mqtt_envelope(device.id, metadata={"compression": "gzip"})
    gzip_garbage["payload"] = base64.b64encode(b"not gzip").decode()
    bad = {
        "not json": (b"{nope", "detection"),
        "not an envelope": (json.dumps({"hello": "world"}).encode(), "detection"),
        "oversize": (json.dumps(mqtt_envelope(device.id, payload={"plate": "A", "confidence": 0.5,
                                                                  "note": "x" * 300_000})).encode(), "detection"),
        "undecodable": (json.dumps(gzip_garbage).encode(), "detection"),
        "other device's id": (json.dumps(mqtt_envelope(other.id)).encode(), "detection"),
        "topic says health": (json.dumps(mqtt_envelope(device.id, "detection")).encode(), "health"),
    }  # fmt: skip
    for body, data_type in bad.values():
        camera.publish(body, data_type)
    good = mqtt_envelope(device.id)
    camera.publish(good)

    assert camera.wait_ack(good["message_id"])["status"] == "accepted"
    wait_until(lambda: len(camera.ack_list) == len(bad) + 1, what="every ack")
    rejected = [a for a in camera.ack_list if a["status"] == "rejected"]
    assert sorted(a["error"] for a in rejected) == sorted(["invalid", "invalid", "too_large", "invalid", "forbidden", "invalid"])
    assert RejectedMessage.objects.filter(device=device, transport="mqtt").count() == len(bad)
    assert Detection.objects.filter(device__in=[device, other]).count() == 1


def test_message_on_an_unknown_devices_topic_is_recorded_without_an_answer(device, cameras):
    camera = cameras(device)
    ghost = f"{device.id}-GHOST"
    env = mqtt_envelope(ghost)
    camera.client.publish(f"lpr/v1/devices/{ghost}/up/detection", json.dumps(env), qos=1)

    refusal = wait_until(lambda: RejectedMessage.objects.filter(message_id=env["message_id"]).first())
    assert (refusal.transport, refusal.error, refusal.device_id) == ("mqtt", "unauthenticated", None)
    assert ghost in refusal.detail
    assert not Message.objects.filter(message_id=env["message_id"]).exists()


def test_a_deactivated_device_is_refused_within_the_cache_lifetime(device, cameras):
    camera = cameras(device)
    first = mqtt_envelope(device.id)
    camera.publish(first)
    assert camera.wait_ack(first["message_id"])["status"] == "accepted"

    Device.objects.filter(pk=device.pk).update(active=False)
    time.sleep(5.5)  # the bridge's device cache lives 5 s
    later = mqtt_envelope(device.id)
    camera.publish(later)

    ack = camera.wait_ack(later["message_id"])
    assert (ack["status"], ack["error"]) == ("rejected", "forbidden")
    assert not Message.objects.filter(message_id=later["message_id"]).exists()


CAMERA_WITH_A_WILL = """
import sys, time, paho.mqtt.client as mqtt
device_id, port = sys.argv[1], int(sys.argv[2])
status = f"lpr/v1/devices/{device_id}/status"
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"will-{device_id}")
c.will_set(status, "offline", qos=1, retain=True)
c.connect("127.0.0.1", port, keepalive=5)
c.loop_start()
c.publish(status, "online", qos=1, retain=True).wait_for_publish(5)
print("online", flush=True)
time.sleep(600)
"""


def test_status_online_then_last_will_marks_the_device_offline(device):
    proc = subprocess.Popen([sys.executable, "-c", CAMERA_WITH_A_WILL, device.id, "1883"], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "online"
        wait_until(lambda: Device.objects.get(pk=device.pk).mqtt_status == "online", what="online")
        proc.kill()  # no DISCONNECT: the broker publishes the will
        proc.wait(5)
        wait_until(lambda: Device.objects.get(pk=device.pk).mqtt_status == "offline", what="offline")
        assert Device.objects.get(pk=device.pk).mqtt_status_at is not None
    finally:
        proc.kill()
        _clear_retained(f"lpr/v1/devices/{device.id}/status")


def test_downlink_commands_reach_the_camera_and_config_is_retained(device, cameras):
    from transport.mqtt import downlink

    camera = cameras(device)
    command = commands.wire_shape(commands.issue(device, "capture", {"fps": 2}))
    assert downlink.publish_command(device.id, command)
    assert downlink.publish_config(device.id, {"version": 4, "values": {"fps": 12}})

    wait_until(lambda: len(camera.down) == 2, what="command and config")
    by_leaf = {topic.rsplit("/", 1)[-1]: (json.loads(body), retain) for topic, body, retain in camera.down}
    assert by_leaf["command"][0] == command
    assert by_leaf["config"][0] == {"version": 4, "values": {"fps": 12}}
    late = cameras(device)  # subscribes after the publish: the retained config still reaches it
    wait_until(lambda: late.down, what="retained config")
    assert late.down[0][0].endswith("/down/config") and late.down[0][2] is True
    _clear_retained(f"lpr/v1/devices/{device.id}/down/config")


def _clear_retained(topic: str) -> None:
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", "1883", "-t", topic, "-r", "-n", "-q", "1"], check=True)
