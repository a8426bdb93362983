"""Outages: PostgreSQL down or slow, Redis down, the broker restarted. Each test reconciles what the cameras
produced against what was stored: lost 0, stored twice 0. /readyz names the dependency that is down.

One deployment for the module (outage_stack.Stack); every test gives back what it took away.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
import requests

from detections.models import Detection
from tests.factories import envelope
from tests.mqtt.conftest import RUNNING, BridgeProcess, Mosquitto
from tests.realtime.conftest import in_thread, start_server
from tests.support import FaultProxyProcess, server_database_url
from transport.models import Message

from .conftest import RedisServer, scrape, wait_until
from .outage_stack import PERSISTENT_BROKER, Ledger, MqttCamera, RestCamera, SocketIOCamera, Stack, WebSocketCamera

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ALL_UP = {"database": True, "redis": True, "mqtt_broker": True}


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, tmp_path_factory):
    directory = tmp_path_factory.mktemp("outages")
    db, redis = FaultProxyProcess(), RedisServer(directory)
    broker = Mosquitto(directory, PERSISTENT_BROKER.format(dir=directory))
    with django_db_blocker.unblock():
        database_url = server_database_url(PORT=db.port)
        server = start_server(directory, DATABASE_URL=database_url, REDIS_URL=redis.url, MQTT_URL=broker.url,
                              DB_POOL_TIMEOUT_S="1", DEVICE_RATE_BURST="100000")  # fmt: skip
        bridge = BridgeProcess(directory, broker.url, f"outages-{uuid.uuid4().hex[:6]}", database_url=database_url)
    RUNNING.remove(bridge)
    bridge.wait_subscribed()
    yield Stack(db, redis, broker, server, bridge, directory)
    bridge.kill()
    server.stop()
    broker.stop()
    redis.stop()
    db.stop()


def reconcile(device, ledger: Ledger) -> dict:
    """lost: produced and not stored; stored_twice: more than one row for one message; unexpected: never produced."""
    produced = set(ledger.produced)
    stored = [str(i) for i in Message.objects.filter(device=device).values_list("message_id", flat=True)]
    reads = Counter(str(i) for i in Detection.objects.filter(device=device).values_list("message_id", flat=True))
    return {
        "produced": len(produced), "stored": len(set(stored)), "lost": len(produced - set(stored)),
        "stored_twice": len(stored) - len(set(stored)) + sum(n - 1 for n in reads.values()),
        "unexpected": len(set(stored) - produced),
    }  # fmt: skip


def test_readyz_names_each_dependency_that_is_down_while_healthz_stays_up(stack, figures):
    assert stack.readyz() == (200, ALL_UP)
    outages = [("database", stack.storage_down, stack.storage_up), ("redis", stack.redis.stop, stack.redis.start),
               ("mqtt_broker", stack.broker.stop, stack.broker.start)]  # fmt: skip
    seen = {}
    for name, take_away, give_back in outages:
        connections = stack.bridge_connections()
        take_away()
        try:
            seen[name] = stack.readyz()
            assert requests.get(f"{stack.server.http}/healthz", timeout=5).status_code == 200
        finally:
            give_back()
        wait_until(lambda: stack.readyz()[0] == 200, 30, what=f"ready again after {name}")
        if name == "mqtt_broker":
            wait_until(lambda: stack.bridge_connections() > connections, 30, what="the bridge back on the broker")
    for name, _, _ in outages:
        assert seen[name] == (503, {**ALL_UP, name: False}), name
    figures.record("outages", "readyz", dependencies_taken_away=[n for n, _, _ in outages],
                   answered=({n: seen[n][0] for n in seen}))  # fmt: skip


def test_postgres_down_is_answered_unavailable_on_every_transport_and_nothing_is_lost(stack, fast_device, token_for,
                                                                                      figures):  # fmt: skip
    devices = {via: fast_device() for via in ("rest", "websocket", "socketio", "mqtt")}
    cameras = {"rest": RestCamera(stack.server, devices["rest"]),
               "websocket": WebSocketCamera(stack.server, token_for(devices["websocket"])),
               "socketio": SocketIOCamera(stack.server, token_for(devices["socketio"])),
               "mqtt": MqttCamera(stack.broker, devices["mqtt"])}  # fmt: skip

    def batch(via: str, n: int) -> list[dict]:
        return [envelope(devices[via].id, protocol=via) for _ in range(n)]

    async def phase(n: int) -> None:
        await asyncio.gather(*(_send_all(camera, batch(via, n)) for via, camera in cameras.items()))

    def stored() -> int:
        return Message.objects.filter(device__in=devices.values()).count()

    def mqtt_settled() -> bool:
        cameras["mqtt"].collect()
        return not cameras["mqtt"].ledger.unsettled()

    async def scenario():
        await phase(10)  # storage up
        await asyncio.to_thread(wait_until, mqtt_settled, 20, what="the MQTT acks before the outage")
        stack.storage_down()
        try:
            during_before = await in_thread(stored)
            await phase(10)
            during_after = await in_thread(stored)
            cameras["mqtt"].collect()
            acked_while_down = 20 - len(cameras["mqtt"].ledger.unsettled())
        finally:
            stack.storage_up()
        for via in ("rest", "websocket", "socketio"):  # firmware resends what was not acknowledged
            camera = cameras[via]
            await _send_all(camera, camera.ledger.unsettled())
            await _send_all(camera, list(camera.ledger.produced.values())[:3])  # and a few twice: duplicates
        await asyncio.to_thread(wait_until, mqtt_settled, 60, what="every MQTT message acked after the outage")
        for camera in cameras.values():
            await camera.close()
        return during_before, during_after, acked_while_down

    before, after, mqtt_acked_while_down = asyncio.run(scenario())
    assert before == after  # nothing stored, nothing half-stored, while storage was away
    assert mqtt_acked_while_down == 10  # only those sent before: the rest waited, unacknowledged, for storage
    results = {}
    for via, camera in cameras.items():
        ledger = camera.ledger
        results[via] = {**reconcile(devices[via], ledger), "unavailable_answers": ledger.count("unavailable"),
                        "duplicates_answered": ledger.count("duplicate")}  # fmt: skip
        assert results[via]["lost"] == results[via]["stored_twice"] == results[via]["unexpected"] == 0, (via, results)
        if via != "mqtt":
            assert ledger.count("unavailable") == 10 and ledger.count("duplicate") >= 3, (via, ledger.answers)
    results["mqtt"]["acked_while_storage_down"] = mqtt_acked_while_down - 10
    figures.record("outages", "postgres_down", **results)


async def _send_all(camera, envs: list[dict]) -> None:
    await camera.send_many(envs)


def test_slow_storage_fills_a_camera_socket_queue_to_its_bound_then_throttles_and_loses_nothing(
    stack, fast_device, token_for, figures
):
    from transport.ws.batcher import MAX_QUEUED

    device = fast_device()
    camera = WebSocketCamera(stack.server, token_for(device))
    flood = [envelope(device.id, "health", protocol="websocket") for _ in range(MAX_QUEUED + 300)]

    async def scenario():
        await camera.send_many([envelope(device.id, "health", protocol="websocket")])  # connected, storage fine
        stack.db.act("blackhole", on=1)  # storage hangs: statements neither finish nor fail
        try:
            sending = asyncio.create_task(camera.send_many(flood))
            await asyncio.to_thread(wait_until, lambda: camera.ledger.count("throttled") >= 250, 30,
                                    what="throttled acks while storage hangs")  # fmt: skip
            depth = scrape(stack.server)['lpr_queue_depth{queue="realtime_batcher"}']
        finally:
            stack.storage_up()
        await sending
        for _ in range(10):  # firmware resends what was throttled or unavailable until it is stored
            if not camera.ledger.unsettled():
                break
            await camera.send_many(camera.ledger.unsettled())
        await camera.close()
        return depth

    depth = asyncio.run(scenario())
    result = {**reconcile(device, camera.ledger), "throttled_answers": camera.ledger.count("throttled"),
              "unavailable_answers": camera.ledger.count("unavailable"), "queue_depth_seen": depth,
              "queue_bound": MAX_QUEUED}  # fmt: skip
    figures.record("outages", "postgres_hanging_websocket_flood", **result)
    assert depth <= MAX_QUEUED
    assert result["lost"] == result["stored_twice"] == result["unexpected"] == 0, result
