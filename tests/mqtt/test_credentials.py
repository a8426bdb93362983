"""`mqtt_credentials` files in a private Mosquitto with `allow_anonymous false`: keys and access lists enforced."""

import base64
import hashlib
import subprocess

import paho.mqtt.client as mqtt
import pytest
from django.core.management import call_command

from transport.mqtt.broker_files import hash_password

from .conftest import Camera, wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture
def secured(make_device, mosquitto, tmp_path, monkeypatch):
    """Two devices and a Mosquitto using the password file and access list the command writes."""
    monkeypatch.setenv("MQTT_BRIDGE_PASSWORD", "bridge-secret")
    first, second = make_device(), make_device()
    retired = make_device(active=False)
    call_command("mqtt_credentials", out=str(tmp_path / "broker"))
    assert retired.id not in (tmp_path / "broker" / "passwd").read_text()
    broker = mosquitto(
        "allow_anonymous false\n"
        f"password_file {tmp_path / 'broker' / 'passwd'}\n"
        f"acl_file {tmp_path / 'broker' / 'acl'}\n"
    )
    return broker, first, second


def test_password_hash_is_the_one_mosquitto_passwd_writes(tmp_path):
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(tmp_path / "pw"), "CAM1", "s3cret"], check=True)
    theirs = (tmp_path / "pw").read_text().strip().split(":", 1)[1]
    _, kind, iterations, salt, digest = theirs.split("$")

    ours = hash_password("s3cret", base64.b64decode(salt), int(iterations))

    assert ours == theirs
    assert (kind, len(base64.b64decode(salt))) == ("7", 12)
    assert base64.b64decode(digest) == hashlib.pbkdf2_hmac("sha512", b"s3cret", base64.b64decode(salt), 101, 64)


def test_device_connects_with_its_key_and_not_with_a_wrong_one(secured):
    broker, device, _ = secured
    good = Camera(device.id, broker.port, device.issued.key).connect(subscribe=False)
    bad = Camera(device.id, broker.port, device.issued.key + "x").connect(subscribe=False)
    nobody = Camera(device.id, broker.port).connect(subscribe=False)
    try:
        assert not good.connect_rc.is_failure
        assert bad.connect_rc.is_failure and nobody.connect_rc.is_failure
    finally:
        for c in (good, bad, nobody):
            c.close()


def test_device_cannot_publish_into_nor_subscribe_to_another_devices_topics(secured):
    broker, device, other = secured
    bridge = Camera("lpr-bridge", broker.port, "bridge-secret").connect(subscribe=False)
    assert not bridge.connect_rc.is_failure
    assert bridge.subscribe("lpr/v1/devices/#") == 1  # granted QoS 1
    seen = []
    bridge.client.on_message = lambda c, u, msg: seen.append(msg.topic)
    # MQTT 5, so the broker can say "not authorized" in the PUBACK (a 3.1.1 client gets a packet it cannot parse).
    camera = Camera(device.id, broker.port, device.issued.key, protocol=mqtt.MQTTv5)
    camera.connect(subscribe=False)
    try:
        # Mosquitto 2.0 grants the SUBACK and applies the access list to each message it would deliver.
        camera.subscribe(f"lpr/v1/devices/{other.id}/#")
        assert camera.subscribe(f"lpr/v1/devices/{device.id}/down/#") == 1
        camera.publish(b"{}", topic=f"lpr/v1/devices/{other.id}/up/detection").wait_for_publish(5)
        camera.publish(b"{}", topic=f"lpr/v1/devices/{device.id}/up/detection").wait_for_publish(5)
        bridge.client.publish(f"lpr/v1/devices/{other.id}/down/ack", b"{}", qos=1).wait_for_publish(5)
        bridge.client.publish(f"lpr/v1/devices/{device.id}/down/ack", b"{}", qos=1).wait_for_publish(5)

        wait_until(lambda: f"lpr/v1/devices/{device.id}/up/detection" in seen, what="the device's own message")
        wait_until(lambda: camera.down, what="the device's own down/ack")
        assert f"lpr/v1/devices/{other.id}/up/detection" not in seen
        assert [topic for topic, _, _ in camera.down] == [f"lpr/v1/devices/{device.id}/down/ack"]
    finally:
        camera.close()
        bridge.close()
