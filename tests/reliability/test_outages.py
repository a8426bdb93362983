"""Outages: PostgreSQL down or slow, Redis down, the broker restarted. Each test reconciles what the cameras
produced against what was stored: lost 0, stored twice 0. /readyz names the dependency that is down.

One deployment for the module (outage_stack.Stack); every test gives back what it took away.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter

import pytest
import requests

from detections.models import Detection
from tests.factories import envelope
from tests.alerts.conftest import start_worker
from tests.mqtt.conftest import RUNNING, BridgeProcess, Mosquitto, Stream
from tests.realtime.conftest import in_thread, start_server
from tests.support import FaultProxyProcess, server_database_url
from transport.models import Message

from .conftest import RedisServer, scrape, wait_until
from .outage_stack import (
    PERSISTENT_BROKER, Dashboard, HoldingReceiver, Ledger, MqttCamera, RestCamera, SocketIOCamera, Stack,
    WebSocketCamera,
)

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
                              DB_POOL_TIMEOUT_S="1", DEVICE_RATE_BURST="100000", ALERT_INDEX_CHECK_S="0")  # fmt: skip
        bridge = BridgeProcess(directory, broker.url, f"outages-{uuid.uuid4().hex[:6]}", database_url=database_url,
                               env={"REDIS_URL": redis.url})  # fmt: skip
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
        for via in ("rest", "websocket", "socketio"):  # firmware resends what was not acknowledged, until it is
            camera = cameras[via]
            await _resend_until_settled(camera)
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
        stored_ids = {str(i) for i in Message.objects.filter(device=devices[via]).values_list("message_id", flat=True)}
        missing = {mid: ledger.answers[mid] for mid in ledger.produced if mid not in stored_ids}
        assert results[via]["lost"] == results[via]["stored_twice"] == results[via]["unexpected"] == 0, (via, missing)
        if via != "mqtt":
            assert ledger.count("unavailable") >= 10 and ledger.count("duplicate") >= 3, (via, ledger.answers)
    results["mqtt"]["acked_while_storage_down"] = mqtt_acked_while_down - 10
    figures.record("outages", "postgres_down", **results)


def test_a_camera_that_connects_while_storage_is_down_is_told_to_try_again_later(stack, fast_device, token_for):
    import socketio
    import websockets

    device = fast_device()
    token = token_for(device)

    async def refusals() -> tuple[int, dict]:
        ws = await websockets.connect(f"{stack.server.ws}/ws/device/?token={token}")
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 15)
        client, errors = socketio.AsyncClient(reconnection=False), []
        client.on("connect_error", errors.append, namespace="/device")
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(stack.server.http, namespaces=["/device"], auth={"token": token},
                                 transports=["websocket"], wait_timeout=15)  # fmt: skip
        await client.disconnect()
        return closed.value.rcvd.code, errors[0]["data"]

    async def scenario():
        stack.storage_down()
        try:
            refused = await refusals()
        finally:
            stack.storage_up()
        camera = WebSocketCamera(stack.server, token)  # once storage is back, the same token gets in
        await camera.send_many([envelope(device.id, protocol="websocket")])
        await _resend_until_settled(camera)  # the first write after an outage may still meet a dead connection
        await camera.close()
        return refused, camera.ledger

    (ws_code, sio_data), ledger = asyncio.run(scenario())
    assert ws_code == 4503
    assert (sio_data["error"], sio_data["close_code"]) == ("unavailable", 4503)
    assert ledger.count("accepted") == 1


async def _send_all(camera, envs: list[dict]) -> None:
    await camera.send_many(envs)


async def _resend_until_settled(camera, rounds: int = 20) -> None:
    """Resend what was not acknowledged (the first tries after an outage may meet a connection that died in it)."""
    for _ in range(rounds):
        if not camera.ledger.unsettled():
            return
        await camera.send_many(camera.ledger.unsettled())
        await asyncio.sleep(0.1)
    raise AssertionError(f"still unsettled after {rounds} rounds: {camera.ledger.unsettled()}")


def test_slow_storage_fills_a_camera_socket_queue_to_its_bound_then_throttles_and_loses_nothing(
    stack, fast_device, token_for, figures
):
    from transport.batching import MAX_QUEUED

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
        await _resend_until_settled(camera)  # as firmware does with what was throttled or unavailable
        await camera.close()
        return depth

    depth = asyncio.run(scenario())
    result = {**reconcile(device, camera.ledger), "throttled_answers": camera.ledger.count("throttled"),
              "unavailable_answers": camera.ledger.count("unavailable"), "queue_depth_seen": depth,
              "queue_bound": MAX_QUEUED}  # fmt: skip
    figures.record("outages", "postgres_hanging_websocket_flood", **result)
    assert depth <= MAX_QUEUED
    assert result["lost"] == result["stored_twice"] == result["unexpected"] == 0, result


@pytest.fixture(scope="module")
def worker(stack, django_db_blocker):
    with django_db_blocker.unblock():
        database_url = server_database_url()
    w = start_worker(stack.directory, pool="prefork", concurrency=1, DATABASE_URL=database_url, REDIS_URL=stack.redis.url,
                     ALERT_WEBHOOK_TIMEOUT_S="30")  # a delivery caught mid-request stays there until it is killed
    yield w
    w.kill()


def test_redis_down_ingest_still_stores_and_live_push_and_alerts_recover(stack, worker, fast_device, token_for,
                                                                         operator_cookie, figures):  # fmt: skip
    from detections.alert_models import Alert
    from tests.alerts.conftest import make_watchlist

    make_watchlist([{"value": f"REDIS0{n}"} for n in range(1, 4)])
    devices = {via: fast_device() for via in ("rest", "websocket", "socketio", "mqtt")}
    cameras = {"rest": RestCamera(stack.server, devices["rest"]),
               "websocket": WebSocketCamera(stack.server, token_for(devices["websocket"])),
               "socketio": SocketIOCamera(stack.server, token_for(devices["socketio"])),
               "mqtt": MqttCamera(stack.broker, devices["mqtt"])}  # fmt: skip
    dashboard = Dashboard(stack.server, operator_cookie)
    hits = {"before": ("rest", "REDIS01"), "during": ("websocket", "REDIS02"), "after": ("socketio", "REDIS03")}

    def reads(phase: str, via: str) -> list[dict]:
        plates = [f"RD{n}{phase[0].upper()}" for n in range(4)]
        if hits[phase][0] == via:
            plates.append(hits[phase][1])
        return [envelope(devices[via].id, protocol=via, payload={"plate": p, "confidence": 0.9}) for p in plates]

    async def phase(name: str) -> set[str]:
        batches = {via: reads(name, via) for via in cameras}
        await asyncio.gather(*(cameras[via].send_many(envs) for via, envs in batches.items()))
        return {env["message_id"] for envs in batches.values() for env in envs}

    async def live_again() -> float:
        """Seconds until a fresh read reaches the dashboard (events published before the server's channel layer
        has rejoined its groups are lost: live push is best effort, the reads themselves are stored)."""
        started, rest = time.monotonic(), cameras["rest"]
        while True:
            probe = envelope(devices["rest"].id, protocol="rest", payload={"plate": "PROBE1", "confidence": 0.9})
            await rest.send(probe)
            for _ in range(10):
                if probe["message_id"] in dashboard.detections():
                    return time.monotonic() - started
                await asyncio.sleep(0.05)
            assert time.monotonic() - started < 30, "live push did not recover within 30 s"

    def alerted(plate: str) -> bool:
        return Alert.objects.filter(plate=plate).exists()

    async def scenario():
        before = await phase("before")
        await asyncio.to_thread(wait_until, lambda: before <= dashboard.detections(), 20, what="live events")
        # Settled first: a task already queued in Redis dies with it when Redis keeps nothing (run it with
        # appendonly, docs/reliability.md). What this test pins is what happens to reads made while it is away.
        await in_thread(wait_until, lambda: alerted("REDIS01"), 30, 0.05, "the first alert")
        stack.redis.stop()
        try:
            await asyncio.to_thread(wait_until, lambda: not stack.readyz()[1]["redis"], 20, what="Redis down")
            during = await phase("during")
            await asyncio.to_thread(wait_until, lambda: "alert intake: could not queue" in stack.server.log(), 20,
                                    what="the alert intake to find the Celery broker away")  # fmt: skip
        finally:
            stack.redis.start()
        recovered_in = await live_again()
        after = await phase("after")
        await asyncio.to_thread(wait_until, lambda: after <= dashboard.detections(), 20, what="live events again")
        # A dashboard may show a read before its MQTT ack reaches the camera: collect the acks before closing.
        mqtt = cameras["mqtt"]
        await asyncio.to_thread(wait_until, lambda: (mqtt.collect(), not mqtt.ledger.unsettled())[1], 30,
                                what="MQTT acks")  # fmt: skip
        for camera in cameras.values():
            await camera.close()
        return before, during, after, recovered_in

    try:
        before, during, after, recovered_in = asyncio.run(scenario())
        wait_until(lambda: Alert.objects.filter(plate__startswith="REDIS").count() >= 3, 60,
                   what="the alerts, the one read while Redis was down included")  # fmt: skip
    finally:
        dashboard.close()
    results = {via: reconcile(devices[via], camera.ledger) for via, camera in cameras.items()}
    for via, camera in cameras.items():
        assert results[via]["lost"] == results[via]["stored_twice"] == 0, (via, results[via])
        assert set(camera.ledger.answers[mid][0] for mid in camera.ledger.produced) == {"accepted"}, via
    alerts = sorted(Alert.objects.filter(plate__startswith="REDIS").values_list("plate", flat=True))
    assert alerts == ["REDIS01", "REDIS02", "REDIS03"]
    figures.record("outages", "redis_down", ingest=results, alerts_raised=alerts,
                   live_events_after_recovery=len(after & dashboard.detections()),
                   live_events_while_down=len(during & dashboard.detections()), live_push_back_in_s=round(recovered_in, 2),
                   dashboard_connections=dashboard.connections)  # fmt: skip


def test_a_broker_restart_mid_stream_loses_nothing_and_the_bridge_resumes(stack, make_device, figures):
    devices = [make_device(rate_limit_per_s=1e6) for _ in range(3)]
    connections = stack.bridge_connections()
    stream = Stream(stack.broker.port, devices, 600, per_s=200)
    wait_until(lambda: stream.stored() >= 150, 30, every=0.01, what="the bridge to store some")
    stack.broker.stop()  # SIGTERM: Mosquitto saves its persistent sessions, the bridge's unacked messages included
    stopped = time.monotonic()
    stack.broker.start()
    wait_until(lambda: stack.bridge_connections() > connections, 30, what="the bridge to reconnect and subscribe")
    back_in = time.monotonic() - stopped
    stream.finish()
    counts = stream.assert_each_stored_once()
    figures.record("outages", "mqtt_broker_restart_mid_stream", **counts, bridge_back_in_s=round(back_in, 2))
    assert back_in < 10  # the reconnect backoff is capped at 5 s


def test_a_celery_worker_killed_mid_task_runs_it_again_and_its_effects_happen_once(stack, worker, make_device,
                                                                                   django_db_blocker, figures):  # fmt: skip
    from detections.alert_models import Alert, Delivery
    from tests.alerts.conftest import make_watchlist, make_webhook

    receiver = HoldingReceiver()
    make_watchlist([{"value": "KILL001"}, {"value": "KILL002"}])
    make_webhook(receiver.url)
    cameras = [RestCamera(stack.server, make_device()) for _ in range(2)]  # two cameras: two passages, two alerts
    replacement = None

    def caught_sending(n: int) -> None:
        wait_until(lambda: len(receiver.requests) >= n, 60, what=f"delivery {n} to reach the receiver")

    def delivered(plate: str):
        return Delivery.objects.filter(channel="webhook", alert__plate=plate, state="delivered").first()

    try:
        # 1. The pool process running the delivery is SIGKILLed (an OOM kill): the worker requeues its task.
        asyncio.run(cameras[0].send(envelope(cameras[0].device_id, payload={"plate": "KILL001", "confidence": 0.9})))
        caught_sending(1)
        children = worker.pool_children()
        assert len(children) == 1
        os.kill(children[0], signal.SIGKILL)
        first = wait_until(lambda: delivered("KILL001"), 60, what="the requeued delivery to succeed")
        # 2. The whole worker is SIGKILLed (a lost machine); another worker takes the task once it is visible again.
        asyncio.run(cameras[1].send(envelope(cameras[1].device_id, payload={"plate": "KILL002", "confidence": 0.9})))
        caught_sending(3)
        worker.kill()
        with django_db_blocker.unblock():
            database_url = server_database_url()
        replacement = start_worker(stack.directory, pool="prefork", concurrency=1, DATABASE_URL=database_url,
                                   REDIS_URL=stack.redis.url, CELERY_VISIBILITY_TIMEOUT_S="1")  # fmt: skip
        second = wait_until(lambda: delivered("KILL002"), 60, what="the abandoned delivery to be taken up again")
    finally:
        receiver.close()
        if replacement is not None:
            replacement.kill()

    alerts = list(Alert.objects.filter(plate__in=["KILL001", "KILL002"]).values_list("plate", flat=True))
    assert sorted(alerts) == ["KILL001", "KILL002"]  # one alert per read, whatever ran twice
    for d in (first, second):
        assert d.attempts == 1 and [r for r, _ in receiver.requests].count(str(d.id)) == 2  # sent twice, done once
    assert receiver.answered == [str(first.id), str(second.id)]
    assert "WorkerLostError" in worker.log()
    figures.record("outages", "celery_worker_sigkilled_mid_task", kills=["pool process", "whole worker"],
                   tasks_run_again=2, alerts=len(alerts), deliveries_recorded=2, webhook_requests=len(receiver.requests),
                   webhook_requests_answered=len(receiver.answered))  # fmt: skip
