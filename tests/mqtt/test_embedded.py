"""The embedded broker (amqtt) with the bridge: device keys and topic confinement, and the pipeline behind it."""

import json

import paho.mqtt.client as mqtt
import pytest

from tests.factories import envelope
from transport.models import Message
from transport.mqtt.embedded import EmbeddedBroker

from .conftest import BridgeProcess, Camera, free_port, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def embedded():
    broker = EmbeddedBroker("127.0.0.1", free_port())
    broker.start()
    yield broker
    broker.stop()


def test_embedded_broker_takes_device_keys_and_bridges_into_the_pipeline(embedded, make_device, tmp_path):
    device, other = make_device(), make_device()
    bridge = BridgeProcess(tmp_path, embedded.url, "embedded-bridge").wait_subscribed()
    camera = Camera(device.id, embedded.port, device.issued.key).connect()
    wrong = Camera(device.id, embedded.port, other.issued.key).connect(subscribe=False)
    try:
        assert not camera.connect_rc.is_failure
        assert wrong.connect_rc.is_failure
        env = envelope(device.id, protocol="mqtt")
        camera.publish(env)
        assert camera.wait_ack(env["message_id"])["status"] == "accepted"
        assert Message.objects.get(message_id=env["message_id"]).received_via == "mqtt"
    finally:
        camera.close()
        wrong.close()
    assert bridge.terminate() == 0


def test_embedded_broker_confines_a_device_to_its_own_topics(embedded, make_device):
    device, other = make_device(), make_device()
    watcher = Camera("lpr-bridge", embedded.port, embedded.password).connect(subscribe=False)
    watcher.subscribe("lpr/v1/devices/#")
    seen = []
    watcher.client.on_message = lambda c, u, msg: seen.append(msg.topic)
    camera = Camera(device.id, embedded.port, device.issued.key).connect()
    try:
        camera.subscribe(f"lpr/v1/devices/{other.id}/#")
        camera.publish(b"{}", topic=f"lpr/v1/devices/{other.id}/up/detection").wait_for_publish(5)
        camera.publish(b"{}", topic=f"lpr/v1/devices/{device.id}/up/detection").wait_for_publish(5)
        watcher.client.publish(f"lpr/v1/devices/{other.id}/down/ack", b"{}", qos=1).wait_for_publish(5)
        watcher.client.publish(f"lpr/v1/devices/{device.id}/down/ack", b"{}", qos=1).wait_for_publish(5)

        wait_until(lambda: f"lpr/v1/devices/{device.id}/up/detection" in seen, what="the device's own message")
        wait_until(lambda: camera.down, what="the device's own down/ack")
        assert f"lpr/v1/devices/{other.id}/up/detection" not in seen
        assert [topic for topic, _, _ in camera.down] == [f"lpr/v1/devices/{device.id}/down/ack"]
    finally:
        camera.close()
        watcher.close()
