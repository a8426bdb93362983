"""`mqtt_credentials` files in a private Mosquitto with `allow_anonymous false`: keys and access lists enforced."""

import base64
import hashlib
import subprocess

import paho.mqtt.client as mqtt
import pytest
from django.core.management import call_command

from transport.mqtt.broker_files import hash_password

from .conftest import Camera, assert_confined

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
    # MQTT 5, so a denied publish is answered "not authorized" in its PUBACK.
    camera = Camera(device.id, broker.port, device.issued.key, protocol=mqtt.MQTTv5).connect()
    try:
        assert not bridge.connect_rc.is_failure
        assert_confined(camera, bridge, other.id)
    finally:
        camera.close()
        bridge.close()
