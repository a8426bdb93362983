"""Scale-out: two web processes behind nginx and two MQTT bridges on a shared subscription, one database.

The layout of docs/deployment.md on one machine, from the files in docs/deploy/: nginx with TLS
(nginx/lpr.conf) in front of two `manage.py serve --no-mqtt --no-watch` processes started as
lpr-web@.service starts them, two `run_mqtt_bridge --shared lpr` started as lpr-mqtt-bridge@.service
starts them, and Mosquitto (mosquitto/mosquitto.conf) with the accounts `mqtt_credentials` writes,
cameras on its TLS listener. One PostgreSQL database, one Redis.

Cameras send over REST (single and batch), WebSocket, Socket.IO (WebSocket and HTTP long-polling)
and MQTT, through nginx and straight to each process; then one camera sends each of a few envelopes
on five paths at once (REST to each process, WebSocket, Socket.IO, MQTT). Every message_id sent must
be stored exactly once, and three dashboards (one on each process, one through nginx) must each see
every detection exactly once.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import aiohttp
import pytest
import requests
import socketio
import websockets
from django.core.management import call_command

from detections.models import Detection
from tests.factories import envelope
from tests.mqtt.conftest import BridgeProcess, Camera
from tests.realtime.conftest import Server, acks_for, dump, start_server
from tests.support import free_port
from transport.models import Message

from .processes import Nginx, ShippedMosquitto, self_signed_certificate
from .shipped import env_file, exec_start, nginx_site

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PER_CAMERA = 20
RACES = 8
CAMERAS = {"rest": 3, "batch": 1, "websocket": 3, "socketio": 4, "mqtt": 3, "racer": 1, "probe": 1}
VIA = {"rest": "rest", "batch": "rest", "websocket": "websocket", "socketio": "socketio", "mqtt": "mqtt"}


@dataclass
class Stack:
    web: list[Server]
    bridges: list[BridgeProcess]
    broker: ShippedMosquitto
    proxy: Nginx
    cert: Path

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.proxy.port}"

    @property
    def wss(self) -> str:
        return f"wss://127.0.0.1:{self.proxy.port}"

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture
def fleet(make_device):
    return {kind: [make_device() for _ in range(n)] for kind, n in CAMERAS.items()}


@pytest.fixture
def stack(fleet, tmp_path, settings, monkeypatch):
    import redis

    assert settings.REDIS_URL, "the scale-out test needs REDIS_URL (scripts/test sets it from TEST_REDIS_URL)"
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    account = env_file()
    monkeypatch.setenv("MQTT_BRIDGE_USERNAME", account["MQTT_BRIDGE_USERNAME"])
    monkeypatch.setenv("MQTT_BRIDGE_PASSWORD", account["MQTT_BRIDGE_PASSWORD"])
    call_command("mqtt_credentials", out=str(tmp_path / "credentials"))  # every camera of the fleet
    cert, key = self_signed_certificate(tmp_path)
    running: list = []
    try:
        broker = ShippedMosquitto(tmp_path, tmp_path / "credentials", cert, key)
        running.append(broker)
        bridge_url = (
            f"mqtt://{account['MQTT_BRIDGE_USERNAME']}:{account['MQTT_BRIDGE_PASSWORD']}@127.0.0.1:{broker.port}"
        )
        bridges = [start_bridge(tmp_path, bridge_url, instance) for instance in ("1", "2")]
        running += bridges
        web = in_parallel(running, lambda: start_web(tmp_path, bridge_url), lambda: start_web(tmp_path, bridge_url))
        for bridge in bridges:
            bridge.wait_subscribed()
        https = free_port()
        proxy = Nginx(tmp_path / "nginx", nginx_site([w.port for w in web], https, free_port(), cert, key), https)
        running.append(proxy)
        yield Stack(web, bridges, broker, proxy, cert)
    finally:
        for process in reversed(running):
            process.kill() if isinstance(process, BridgeProcess) else process.stop()


def start_web(log_dir: Path, mqtt_url: str) -> Server:
    """A web process as lpr-web@PORT.service starts it, plus an access log to see which requests it took."""
    command = [*exec_start("lpr-web@.service", instance="{port}"), "--access-log"]
    # A Socket.IO client leaving over long-polling waits for its last GET, which the server holds until its
    # ping timeout (python-engineio answers no poll after a client's close): keep that short here.
    return start_server(log_dir, command, MQTT_URL=mqtt_url, DB_POOL_MAX_SIZE="4", REALTIME_SILENT_TIMEOUT_S="10")


def start_bridge(log_dir: Path, url: str, instance: str) -> BridgeProcess:
    """A bridge as lpr-mqtt-bridge@INSTANCE.service starts it, on the test broker."""
    argv = exec_start("lpr-mqtt-bridge@.service", instance=instance)
    options = argv[argv.index("run_mqtt_bridge") + 1 :]
    at = options.index("--client-id")
    client_id = options[at + 1]
    return BridgeProcess(log_dir, url, client_id, *options[:at], *options[at + 2 :])


def in_parallel(running: list, *starts: Callable[[], Any]) -> list:
    """Run the starters at once; what started is added to `running` (to be stopped) even if another failed."""
    with ThreadPoolExecutor(len(starts)) as pool:
        futures = [pool.submit(start) for start in starts]
    started = [f.result() for f in futures if f.exception() is None]
    running += started
    for failed in (f.exception() for f in futures if f.exception() is not None):
        raise failed
    return started


# --- cameras: each sends its envelopes and returns {message_id: status} -----------------------------------


def rest_camera(base: str, device, envs: list[dict], verify: str | bool = True) -> dict[str, str]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Device {device.issued.key}"
        return {e["message_id"]: session.post(f"{base}/api/v1/ingest/", json=e, verify=verify, timeout=10).json()["status"]
                for e in envs}  # fmt: skip


def batch_camera(base: str, device, envs: list[dict], verify: str) -> dict[str, str]:
    answer = requests.post(f"{base}/api/v1/ingest/batch/", json={"messages": envs}, verify=verify, timeout=30,
                           headers={"Authorization": f"Device {device.issued.key}"})  # fmt: skip
    return {r["message_id"]: r["status"] for r in answer.json()["results"]}


async def websocket_camera(url: str, envs: list[dict], tls: ssl.SSLContext) -> dict[str, str]:
    async with websockets.connect(url, ssl=tls) as ws:
        for env in envs:
            await ws.send(dump(env))
        return {mid: ack["status"] for mid, ack in (await acks_for(ws, [e["message_id"] for e in envs])).items()}


@asynccontextmanager
async def socketio_connection(base: str, token: str, transport: str, tls: ssl.SSLContext | None):
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) if tls else None
    client = socketio.AsyncClient(reconnection=False, http_session=session)
    try:
        # The namespace handshake checks the token in the database: give a loaded machine more than the 1 s default.
        await client.connect(
            base, namespaces=["/device"], auth={"token": token}, transports=[transport], wait_timeout=10
        )
        yield client
    finally:
        await client.disconnect()
        if session is not None:
            await session.close()


async def socketio_camera(base: str, token: str, envs: list[dict], transport: str, tls=None) -> dict[str, str]:
    async with socketio_connection(base, token, transport, tls) as client:
        return {
            e["message_id"]: (await client.call("envelope", e, namespace="/device", timeout=10))["status"] for e in envs
        }


@contextmanager
def mqtt_connection(stack: Stack, device):
    """A camera on the broker's TLS listener, logged in with its id and key."""
    camera = Camera(device.id, stack.broker.tls_port, device.issued.key)
    camera.client.tls_set(ca_certs=str(stack.cert))
    try:
        yield camera.connect()
    finally:
        camera.close()


def mqtt_camera(stack: Stack, device, envs: list[dict]) -> dict[str, str]:
    with mqtt_connection(stack, device) as camera:
        for env in envs:
            camera.publish(env)
        return {e["message_id"]: camera.wait_ack(e["message_id"])["status"] for e in envs}


# --- dashboards -------------------------------------------------------------------------------------------


async def watch(ws, seen: list[str]) -> None:
    """Note the message_id of every detection event the dashboard socket receives, answering each frame as the
    dashboard page does (the server's flow control)."""
    async for raw in ws:
        frame = json.loads(raw)
        if frame.get("type") == "events":
            seen.extend(e["message_id"] for e in frame["events"] if e["type"] == "detection")
            await ws.send('{"type": "next"}')


async def eventually(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def until_every_dashboard_listens(stack: Stack, probe, dashboards: list[list[str]]) -> None:
    """Send probe detections until each dashboard has seen one: then each has joined the broadcast group."""
    for _ in range(40):
        env = envelope(probe.id, protocol="rest")
        await asyncio.to_thread(rest_camera, stack.https, probe, [env], str(stack.cert))
        if await eventually(lambda: all(env["message_id"] in seen for seen in dashboards), 0.5):
            return
    raise AssertionError("the dashboards never saw a probe detection")


# --- the scenario -----------------------------------------------------------------------------------------


def plate_reads(device, via: str, count: int = PER_CAMERA) -> list[dict]:
    return [envelope(device.id, protocol=via, sequence=i, payload={"plate": f"SO{device.id[-4:]}{i:03d}", "confidence": 0.9})
            for i in range(count)]  # fmt: skip


async def all_cameras(stack: Stack, fleet, tokens: dict[str, str], sent: dict[str, list[dict]]) -> list[dict[str, str]]:
    cert, tls = str(stack.cert), stack.tls()
    a, b = stack.web
    socketio_routes = [(stack.https, "polling", tls), (stack.https, "websocket", tls), (a.http, "websocket", None),
                       (b.http, "websocket", None)]  # fmt: skip
    return await asyncio.gather(
        *(asyncio.to_thread(rest_camera, stack.https, d, sent[d.id], cert) for d in fleet["rest"]),
        *(asyncio.to_thread(batch_camera, stack.https, d, sent[d.id], cert) for d in fleet["batch"]),
        *(websocket_camera(f"{stack.wss}/ws/device/?token={tokens[d.id]}", sent[d.id], tls) for d in fleet["websocket"]),
        *(socketio_camera(base, tokens[d.id], sent[d.id], transport, ctx)
          for d, (base, transport, ctx) in zip(fleet["socketio"], socketio_routes, strict=True)),
        *(asyncio.to_thread(mqtt_camera, stack, d, sent[d.id]) for d in fleet["mqtt"]),
    )  # fmt: skip


async def race(stack: Stack, device, token: str, envs: list[dict]) -> dict[str, list[str]]:
    """Each envelope on five paths at once: REST to each web process, WebSocket and Socket.IO through nginx, MQTT."""
    a, b = stack.web
    statuses = {}
    async with websockets.connect(f"{stack.wss}/ws/device/?token={token}", ssl=stack.tls()) as ws:
        async with socketio_connection(stack.https, token, "websocket", stack.tls()) as sio:
            with mqtt_connection(stack, device) as mqtt_camera:

                async def over_websocket(env):
                    await ws.send(dump(env))
                    return (await acks_for(ws, [env["message_id"]]))[env["message_id"]]["status"]

                def over_mqtt(env):
                    mqtt_camera.publish(env)
                    return mqtt_camera.wait_ack(env["message_id"])["status"]

                for env in envs:
                    answers = await asyncio.gather(
                        asyncio.to_thread(rest_camera, a.http, device, [env]),
                        asyncio.to_thread(rest_camera, b.http, device, [env]),
                        over_websocket(env),
                        sio.call("envelope", env, namespace="/device", timeout=10),
                        asyncio.to_thread(over_mqtt, env),
                    )
                    rest_a, rest_b, over_ws, over_sio, over_mq = answers
                    statuses[env["message_id"]] = sorted([rest_a[env["message_id"]], rest_b[env["message_id"]], over_ws,
                                                          over_sio["status"], over_mq])  # fmt: skip
    return statuses


def test_two_web_processes_and_two_bridges_store_everything_once_and_every_dashboard_sees_it_once(
    stack, fleet, token_for, operator_cookie
):
    sent = {d.id: plate_reads(d, VIA[kind]) for kind in VIA for d in fleet[kind]}
    raced = plate_reads(fleet["racer"][0], "rest", RACES)
    via_of = {e["message_id"]: VIA[kind] for kind in VIA for d in fleet[kind] for e in sent[d.id]}
    every_id = set(via_of) | {e["message_id"] for e in raced}
    tokens = {d.id: token_for(d) for kind in ("websocket", "socketio", "racer") for d in fleet[kind]}
    dashboards: list[list[str]] = [[], [], []]

    async def scenario():
        entries = [(w.ws, w.http, None) for w in stack.web] + [(stack.wss, stack.https, stack.tls())]
        sockets = [await websockets.connect(f"{ws}/ws/dashboard/", ssl=tls,
                                            additional_headers={"Cookie": operator_cookie, "Origin": origin})
                   for ws, origin, tls in entries]  # fmt: skip
        watchers = [asyncio.create_task(watch(ws, seen)) for ws, seen in zip(sockets, dashboards)]
        try:
            await until_every_dashboard_listens(stack, fleet["probe"][0], dashboards)
            answers = await all_cameras(stack, fleet, tokens, sent)
            logs_after_cameras = [w.log() for w in stack.web]
            race_answers = await race(stack, fleet["racer"][0], tokens[fleet["racer"][0].id], raced)
            got_all = await eventually(lambda: all(every_id <= set(seen) for seen in dashboards), 30)
            assert got_all, [len(every_id - set(seen)) for seen in dashboards]
            await asyncio.sleep(1.0)  # a copy sent twice would arrive now (dashboards get a frame every 25 ms)
            return answers, logs_after_cameras, race_answers
        finally:
            for task in watchers:
                task.cancel()
            for ws in sockets:
                await ws.close()

    answers, logs, race_answers = asyncio.run(scenario())

    # Every camera got `accepted` for every message, wherever it went in; each raced envelope was
    # accepted once and answered `duplicate` on the four other paths.
    answered = {mid: status for statuses in answers for mid, status in statuses.items()}
    assert answered == dict.fromkeys(via_of, "accepted")
    assert race_answers == {e["message_id"]: ["accepted"] + ["duplicate"] * 4 for e in raced}

    # Stored once each, on the transport it came by; one detection row each.
    stored = {
        str(mid): via
        for mid, via in Message.objects.filter(message_id__in=every_id).values_list("message_id", "received_via")
    }
    assert {mid: stored.get(mid) for mid in via_of} == via_of
    assert set(stored) == every_id
    rows = Counter(
        str(mid) for mid in Detection.objects.filter(message_id__in=every_id).values_list("message_id", flat=True)
    )
    assert rows == Counter(every_id)

    # Every dashboard, on either process or through nginx, saw every detection exactly once.
    for seen in dashboards:
        assert Counter(mid for mid in seen if mid in every_id) == Counter(every_id)

    # The work was spread: nginx sent REST and WebSocket cameras to both processes, and kept the
    # Socket.IO long-polling camera's requests on one process (they fail on the other); the two bridges
    # split the MQTT messages between them, each message to one of them.
    for log in logs:
        assert re.search(r'"POST /api/v1/ingest/', log) and re.search(r'"WSCONNECT /ws/device/', log)
    assert sum(bool(re.search(r'"(GET|POST) /socket\.io/', log)) for log in logs) == 1
    settled = [settled_count(bridge) for bridge in stack.bridges]
    assert all(settled) and sum(settled) == len(fleet["mqtt"]) * PER_CAMERA + RACES, settled


def settled_count(bridge: BridgeProcess) -> int:
    """Stop the bridge (SIGTERM) and read how many messages it settled."""
    assert bridge.terminate() == 0, bridge.log()
    return int(re.search(r"stopped after settling (\d+) message", bridge.log()).group(1))
