"""The embedded broker (amqtt) with the bridge: device keys and topic confinement, and the pipeline behind it."""


import pytest

from tests.factories import envelope
from transport.models import Message
from transport.mqtt.embedded import EmbeddedBroker

from .conftest import BridgeProcess, Camera, assert_confined, free_port

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
    camera = Camera(device.id, embedded.port, device.issued.key).connect()
    try:
        assert_confined(camera, watcher, other.id)
    finally:
        camera.close()
        watcher.close()


def test_embedded_broker_keeps_messages_for_the_bridge_while_it_is_away(embedded, make_device, tmp_path):
    device = make_device(rate_limit_per_s=1e6)
    bridge = BridgeProcess(tmp_path, embedded.url, "embedded-away").wait_subscribed()
    bridge.kill()
    camera = Camera(device.id, embedded.port, device.issued.key).connect()
    sent = [envelope(device.id, protocol="mqtt") for _ in range(50)]
    for env in sent:
        camera.publish(env).wait_for_publish(5)
    BridgeProcess(tmp_path, embedded.url, "embedded-away").wait_subscribed()

    for env in sent:
        assert camera.wait_ack(env["message_id"])["status"] == "accepted"
    assert Message.objects.filter(device=device).count() == 50
    camera.close()
