"""Nothing acknowledged is lost, nothing is stored twice: bridge crashes, database outages, shared subscriptions.

Each test runs its own Mosquitto (queues kept for the bridge's persistent
session while it is away) and bridge subprocesses on the test database.
"""

import re
import time

import pytest

from tests.factories import envelope
from tests.support import FaultProxyProcess, record_figures
from transport.models import Message

from .conftest import BridgeProcess, Camera, Stream, server_database_url, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def fast_devices(make_device):
    # Redeliveries count against a device's rate too: give the stream room, so no ack is `throttled`.
    return [make_device(rate_limit_per_s=1e6) for _ in range(4)]


@pytest.mark.parametrize("lanes", ["1", "2"])
def test_bridge_killed_mid_stream_loses_nothing_and_stores_nothing_twice(fast_devices, mosquitto, tmp_path, lanes):
    broker = mosquitto()
    args = ["--batch", "50", "--lanes", lanes]
    bridge = BridgeProcess(tmp_path, broker.url, "crash-bridge", *args).wait_subscribed()
    stream = Stream(broker.port, fast_devices, 2000, per_s=1000)

    wait_until(lambda: stream.stored() >= 300, 30, every=0.01, what="the bridge to store some")
    bridge.kill()  # SIGKILL: whatever it had received but not yet committed was never acked
    at_kill = stream.stored()
    time.sleep(0.5)
    restarted = BridgeProcess(tmp_path, broker.url, "crash-bridge", *args).wait_subscribed()
    stream.finish()

    assert 0 < at_kill < 2000
    name = "mqtt_bridge_sigkilled_mid_stream" + ("" if lanes == "1" else f"_{lanes}_lanes")
    record_figures("outages", name, **stream.assert_each_stored_once())
    assert restarted.terminate() == 0


@pytest.fixture
def db_proxy():
    """A TCP proxy in front of PostgreSQL that the test can cut (edge/faultproxy.py, run as a process)."""
    proxy = FaultProxyProcess()
    yield proxy.port, proxy.act
    proxy.stop()


def test_database_outage_under_load_loses_nothing(fast_devices, mosquitto, tmp_path, db_proxy):
    proxy_port, proxy = db_proxy
    broker = mosquitto()
    bridge = BridgeProcess(tmp_path, broker.url, "outage-bridge", database_url=server_database_url(HOST="127.0.0.1",
                           PORT=proxy_port)).wait_subscribed()  # fmt: skip
    stream = Stream(broker.port, fast_devices, 1500, per_s=500)

    wait_until(lambda: stream.stored() >= 200, 30, every=0.01, what="the bridge to store some")
    proxy("drop", on=1)  # new database connections fail ...
    proxy("cut")  # ... and the open ones die
    wait_until(lambda: "storage unavailable" in bridge.log(), 10, what="the bridge to notice")
    time.sleep(0.5)  # a COMMIT already sent when the link was cut still lands; nothing after it may
    before = stream.stored()
    time.sleep(2)
    during = stream.stored()
    proxy("restore")
    stream.finish()

    assert during == before < 1500  # nothing was stored while the database was away
    record_figures("outages", "mqtt_postgres_down_under_load", **stream.assert_each_stored_once())
    assert bridge.terminate() == 0


def test_a_bridge_killed_while_the_database_is_down_leaves_its_batch_to_the_next(fast_devices, mosquitto, tmp_path,
                                                                                  db_proxy):  # fmt: skip
    proxy_port, proxy = db_proxy
    broker = mosquitto()
    database_url = server_database_url(HOST="127.0.0.1", PORT=proxy_port)
    bridge = BridgeProcess(tmp_path, broker.url, "outage-kill", database_url=database_url).wait_subscribed()
    stream = Stream(broker.port, fast_devices, 600, per_s=300)
    # Some stored first, so the bridge knows the devices (cached 5 s) and it is the pipeline that fails.
    wait_until(lambda: stream.stored() >= 100, 30, every=0.01, what="the bridge to store some")
    proxy("drop", on=1)
    proxy("cut")
    wait_until(lambda: "storage unavailable; retrying" in bridge.log(), 10, what="the bridge to hold its batch")
    time.sleep(0.5)
    bridge.kill()  # had it acked the broker for what it could not store, those messages would now be gone
    proxy("restore")
    BridgeProcess(tmp_path, broker.url, "outage-kill", database_url=database_url).wait_subscribed()
    stream.finish()

    record_figures("outages", "mqtt_bridge_sigkilled_during_postgres_outage", **stream.assert_each_stored_once())


def test_refused_input_is_acked_so_a_restarted_bridge_does_not_see_it_again(device, mosquitto, tmp_path):
    from transport.models import RejectedMessage

    broker = mosquitto()
    bridge = BridgeProcess(tmp_path, broker.url, "refusals").wait_subscribed()
    camera = Camera(device.id, broker.port).connect()
    camera.publish(b"not json", "detection")
    camera.publish(envelope(f"{device.id}X", protocol="mqtt"), topic=f"lpr/v1/devices/{device.id}X/up/detection")
    wait_until(lambda: RejectedMessage.objects.filter(transport="mqtt").count() == 2, what="both refusals")
    time.sleep(0.5)  # the acks reach the broker
    bridge.kill()
    restarted = BridgeProcess(tmp_path, broker.url, "refusals").wait_subscribed()
    good = envelope(device.id, protocol="mqtt")
    camera.publish(good)
    assert camera.wait_ack(good["message_id"])["status"] == "accepted"
    camera.close()

    assert RejectedMessage.objects.filter(transport="mqtt").count() == 2
    assert restarted.terminate() == 0


def test_the_bridge_reconnects_after_the_broker_restarts(device, mosquitto, tmp_path):
    broker = mosquitto()
    bridge = BridgeProcess(tmp_path, broker.url, "reconnects").wait_subscribed()
    broker.stop()
    broker.start()  # no persistence: the bridge must subscribe again by itself
    wait_until(lambda: bridge.log().count("subscribed to") == 2, 40, what="the bridge to resubscribe")
    camera = Camera(device.id, broker.port).connect()
    env = envelope(device.id, protocol="mqtt")
    camera.publish(env)

    assert camera.wait_ack(env["message_id"])["status"] == "accepted"
    camera.close()
    assert bridge.terminate() == 0


def test_two_bridges_on_a_shared_subscription_split_the_stream(fast_devices, mosquitto, tmp_path):
    broker = mosquitto()
    bridges = [
        BridgeProcess(tmp_path, broker.url, f"shared-{name}", "--shared", "lpr").wait_subscribed() for name in "ab"
    ]
    stream = Stream(broker.port, fast_devices, 1000, per_s=1000)
    stream.finish()
    stream.assert_each_stored_once()

    assert [b.terminate() for b in bridges] == [0, 0]
    settled = [int(re.search(r"after settling (\d+) message", b.log()).group(1)) for b in bridges]
    assert sum(settled) == 1000  # each message went to one bridge: without sharing, each would see all 1000
    assert min(settled) > 0


def test_sigterm_finishes_the_batch_in_flight_before_the_bridge_exits(device, mosquitto, tmp_path):
    broker = mosquitto()
    # A batch that waits 3 s to fill: SIGTERM arrives while these messages are in it, unstored.
    bridge = BridgeProcess(tmp_path, broker.url, "sigterm", "--batch-ms", "3000").wait_subscribed()
    camera = Camera(device.id, broker.port).connect()
    sent = [envelope(device.id, protocol="mqtt") for _ in range(10)]
    for env in sent:
        camera.publish(env).wait_for_publish(5)
    time.sleep(0.5)
    assert Message.objects.filter(device=device).count() == 0

    assert bridge.terminate() == 0
    assert Message.objects.filter(device=device).count() == 10
    assert all(camera.wait_ack(env["message_id"], 5)["status"] == "accepted" for env in sent)
    camera.close()


@pytest.mark.parametrize("lanes", ["1", "2"])
def test_an_idle_bridge_stops_on_sigterm_even_when_its_signal_handler_is_slow(device, mosquitto, tmp_path, lanes):
    broker = mosquitto()
    script = ("-m", "tests.mqtt.slow_signal_bridge")
    bridge = BridgeProcess(tmp_path, broker.url, "slow-signal", "--lanes", lanes, script=script).wait_subscribed()
    camera = Camera(device.id, broker.port).connect()
    sent = envelope(device.id, protocol="mqtt")
    camera.publish(sent).wait_for_publish(5)
    assert camera.wait_ack(sent["message_id"], 10)["status"] == "accepted"
    camera.close()
    time.sleep(0.5)  # idle: every lane waiting for its next message

    # Without the fix, the handler's 0.3 s outlasted the main thread's 0.2 s wait for a message, which then never ended.
    assert bridge.terminate(timeout=10) == 0
    assert "stopped after settling 1 message" in bridge.log()
