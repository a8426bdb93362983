"""Every buffer between a camera and the database is bounded: when storage lags, senders are slowed or
told to come back, and memory stays flat. (Dashboards that stop reading: test_slow_consumers.py.)"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings

from detections import alert_intake
from tests.factories import envelope
from tests.mqtt.conftest import BridgeProcess, Mosquitto
from tests.support import FaultProxyProcess, server_database_url
from transport import live, metrics
from transport.models import Message

from .conftest import wait_until

pytestmark = pytest.mark.slow


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.django_db(transaction=True)
def test_the_bridge_stops_reading_instead_of_queueing_while_storage_is_down(fast_device, tmp_path, figures):
    device, broker, proxy = fast_device(), Mosquitto(tmp_path), FaultProxyProcess()
    bridge = BridgeProcess(tmp_path, broker.url, "bounded", database_url=server_database_url(PORT=proxy.port))
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"flood-{uuid.uuid4().hex[:6]}")
    publisher.max_inflight_messages_set(0)
    publisher.max_queued_messages_set(0)
    topic = f"lpr/v1/devices/{device.id}/up/health"
    try:
        bridge.wait_subscribed()
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        warm = envelope(device.id, "health", protocol="mqtt")
        publisher.publish(topic, json.dumps(warm), qos=1)
        wait_until(lambda: Message.objects.filter(device=device).exists(), 20, what="the bridge to store")

        proxy.act("drop", on=1)
        proxy.act("cut")
        kept = [envelope(device.id, "health", protocol="mqtt") for _ in range(300)]  # QoS 1: must all arrive
        for env in kept:
            publisher.publish(topic, json.dumps(env), qos=1)
        wait_until(lambda: "storage unavailable" in bridge.log(), 20, what="the bridge to find storage down")
        before = rss_kib(bridge.proc.pid)
        pad = "p" * 8192
        flood = [publisher.publish(topic, json.dumps(envelope(device.id, "health", {"cpu_percent": 1, "pad": pad},
                                                             protocol="mqtt")), qos=0) for _ in range(12_000)]  # fmt: skip
        for info in flood:
            info.wait_for_publish(30)
        peak, until = before, time.monotonic() + 2.0  # watch the bridge while the broker pushes the flood at it
        while time.monotonic() < until:
            peak = max(peak, rss_kib(bridge.proc.pid))
            time.sleep(0.05)
        proxy.act("restore")

        ids = {e["message_id"] for e in kept} | {warm["message_id"]}
        wait_until(lambda: Message.objects.filter(message_id__in=ids).count() == len(ids), 60, every=0.2,
                   what="every QoS 1 message stored once storage is back")  # fmt: skip
        assert bridge.proc.poll() is None
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        bridge.kill()
        proxy.stop()
        broker.stop()
    grew_mib = (peak - before) / 1024
    figures.record("limits", "mqtt_bridge_with_storage_down", qos0_flood_messages=12_000, flood_mib=round(12_000 * 8.3 / 1024),
                   bridge_rss_growth_mib=round(grew_mib, 1), qos1_sent=len(ids), qos1_stored=len(ids))  # fmt: skip
    assert grew_mib < 40, f"the bridge grew by {grew_mib:.0f} MiB while storage was down"


def test_the_live_pacer_keeps_at_most_its_bound_while_its_sends_are_stuck():
    release, sent = threading.Event(), []
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def stuck_send(items):  # the channel layer hanging (Redis slow)
        await asyncio.to_thread(release.wait, 10)
        sent.append(len(items))

    pacer = live.Pacer(stuck_send, interval=0.01, loop=loop, max_items=1000)
    dropped_before = metrics.live_events_dropped
    pacer.add([0])
    wait_until(lambda: pacer.pending() == 0, 5, what="the first send to start")
    for n in range(50):
        pacer.add(range(n * 100, n * 100 + 100))
    held = pacer.pending()
    release.set()
    wait_until(lambda: sum(sent) == 1 + 1000, 5, what="the bounded remainder to go out")
    loop.call_soon_threadsafe(loop.stop)
    assert held == 1000 and metrics.live_events_dropped - dropped_before == 4000


def test_the_alert_intake_buffer_is_bounded_while_the_broker_is_away(monkeypatch):
    monkeypatch.setattr(alert_intake, "MAX_BUFFERED_IDS", 5000)
    monkeypatch.setattr(alert_intake, "RETRY_AFTER_S", 0.01)
    held, sending, release, away = [], threading.Event(), threading.Event(), threading.Event()
    away.set()

    def send(ids):
        held.append(intake.depth() + len(ids))  # what the buffer held before this batch was taken from it
        sending.set()
        release.wait(5)
        if away.is_set():
            raise ConnectionError("broker unreachable")

    intake = alert_intake.Batcher(send, interval=0.001, max_ids=1000)
    intake.add([f"0-{i}" for i in range(1000)])
    wait_until(sending.is_set, 5, what="the first batch to be in flight")
    for n in range(1, 20):  # while it is: the buffer fills to its bound behind it
        intake.add([f"{n}-{i}" for i in range(1000)])
        assert intake.depth() <= 5000
    release.set()  # that send fails: its ids go back in front of the full buffer
    wait_until(lambda: len(held) > 3, 5, what="retries")
    assert max(held) <= 5000, held
    away.clear()  # the broker is back: what the buffer kept goes out, and its thread rests
    wait_until(lambda: intake.depth() == 0, 5, what="the buffer to drain")


@pytest.mark.django_db
def test_the_channel_layer_holds_at_most_its_capacity_for_a_consumer_that_does_not_read(redis_db):
    layer = get_channel_layer()
    capacity = settings.CHANNEL_LAYERS["default"]["CONFIG"]["capacity"]

    async def scenario():
        channel, full = await layer.new_channel(), 0
        for n in range(capacity + 200):
            try:
                await layer.send(channel, {"type": "x", "n": n})
            except ChannelFull:
                full += 1
        await layer.group_add("bounded-test", channel)
        for n in range(200):  # group sends to a full channel are dropped, not queued
            await layer.group_send("bounded-test", {"type": "x", "n": n})
        first = await layer.receive(channel)
        await layer.group_discard("bounded-test", channel)
        return full, first["n"]

    assert async_to_sync(scenario)() == (200, 0)  # the overflow refused, the oldest kept
