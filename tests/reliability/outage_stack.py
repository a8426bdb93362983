"""A whole deployment whose every dependency a test can take away: PostgreSQL behind a fault proxy, a private
redis-server, a private Mosquitto (with persistence), a Daphne server and an MQTT bridge; and cameras that
behave as firmware does (resend what was not acknowledged)."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import socketio
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.mqtt.conftest import BridgeProcess, Camera, Mosquitto
from tests.realtime.conftest import Server

from .conftest import RedisServer, wait_until

REPO = Path(__file__).resolve().parents[2]

PERSISTENT_BROKER = "allow_anonymous true\npersistence true\npersistence_location {dir}/\nautosave_interval 1\n"


@dataclass
class Stack:
    db: object  # tests.support.FaultProxyProcess
    redis: RedisServer
    broker: Mosquitto
    server: Server
    bridge: BridgeProcess
    directory: Path

    def storage_down(self) -> None:
        self.db.act("drop", on=1)  # new connections fail ...
        self.db.act("cut")  # ... and the open ones die

    def storage_up(self) -> None:
        self.db.act("restore")

    def readyz(self) -> tuple[int, dict]:
        answer = requests.get(f"{self.server.http}/readyz", timeout=15)
        return answer.status_code, answer.json()["checks"]

    def bridge_connections(self) -> int:
        return self.bridge.log().count("subscribed to")


@dataclass
class Ledger:
    """What one camera produced and what the server answered, for the reconciliation."""

    produced: dict[str, dict] = field(default_factory=dict)  # message_id → envelope
    answers: dict[str, list[str]] = field(default_factory=dict)  # message_id → statuses, in order

    def note(self, env: dict, status: str) -> str:
        self.produced.setdefault(env["message_id"], env)
        self.answers.setdefault(env["message_id"], []).append(status)
        return status

    def unsettled(self) -> list[dict]:
        return [env for mid, env in self.produced.items() if not {"accepted", "duplicate"} & set(self.answers[mid])]

    def count(self, status: str) -> int:
        return sum(statuses.count(status) for statuses in self.answers.values())


class Sender:
    async def send_many(self, envs: list[dict]) -> None:
        await asyncio.gather(*(self.send(env) for env in envs))

    async def close(self) -> None:
        pass


class RestCamera(Sender):
    def __init__(self, server: Server, device) -> None:
        self.url, self.ledger, self.device_id = f"{server.http}/api/v1/ingest/", Ledger(), device.id
        self.headers = {"Authorization": f"Device {device.issued.key}"}

    async def send(self, env: dict) -> str:
        answer = await asyncio.to_thread(requests.post, self.url, json=env, headers=self.headers, timeout=15)
        body = answer.json()
        status = body.get("status") or body["error"]
        if status == "unavailable":
            assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1, (answer.status_code, body)
        return self.ledger.note(env, status)


TRY_AGAIN_LATER = 4503


class WebSocketCamera:
    def __init__(self, server: Server, token: str) -> None:
        self.url, self.ledger, self.ws = f"{server.ws}/ws/device/?token={token}", Ledger(), None

    async def send_many(self, envs: list[dict], tries: int = 20) -> None:
        for attempt in range(tries):
            if self.ws is None:
                self.ws = await self._connect()
            try:
                return await self._exchange(envs)
            except ConnectionClosed as exc:  # 4503: the server could not check the token yet
                if exc.rcvd is None or exc.rcvd.code != TRY_AGAIN_LATER or attempt == tries - 1:
                    raise
                self.ws = None
                await asyncio.sleep(0.5)

    async def _exchange(self, envs: list[dict]) -> None:
        for env in envs:
            await self.ws.send(json.dumps(env))
        waiting = {env["message_id"]: env for env in envs}
        while waiting:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), 15))
            if frame.get("type") == "ack" and frame["message_id"] in waiting:
                if frame["status"] == "unavailable":
                    assert frame["retry_after"] >= 1 and frame["error"] == "unavailable", frame
                self.ledger.note(waiting.pop(frame["message_id"]), frame["status"])

    async def _connect(self, tries: int = 20):
        """As firmware does: a handshake the server could not answer (5xx) is tried again. Right after an outage the
        server's database pool may still be reconnecting (with backoff), and a handshake needs the database: the
        server then closes with 4503 (storage unavailable), which `send_many` also tries again."""
        for attempt in range(tries):
            try:
                return await websockets.connect(self.url)
            except InvalidStatus as exc:
                if exc.response.status_code < 500 or attempt == tries - 1:
                    raise
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


class SocketIOCamera(Sender):
    def __init__(self, server: Server, token: str) -> None:
        self.server, self.token, self.ledger, self.client = server, token, Ledger(), None

    async def send_many(self, envs: list[dict]) -> None:
        if self.client is None:
            self.client = socketio.AsyncClient(reconnection=False)
            await self.client.connect(self.server.http, namespaces=["/device"], auth={"token": self.token},
                                      transports=["websocket"])  # fmt: skip
        await super().send_many(envs)

    async def send(self, env: dict) -> str:
        ack = await self.client.call("envelope", env, namespace="/device", timeout=15)
        if ack["status"] == "unavailable":
            assert ack["retry_after"] >= 1 and ack["error"] == "unavailable", ack
        return self.ledger.note(env, ack["status"])

    async def close(self) -> None:
        if self.client is not None:
            await self.client.disconnect()


class MqttCamera(Sender):
    """Publishes at QoS 1; its acks arrive on down/ack after commit. It never resends: the broker redelivers."""

    def __init__(self, broker: Mosquitto, device) -> None:
        self.camera, self.ledger = Camera(device.id, broker.port).connect(), Ledger()

    async def send(self, env: dict) -> str:
        await asyncio.to_thread(lambda: self.camera.publish(env).wait_for_publish(10))
        self.ledger.produced[env["message_id"]] = env
        self.ledger.answers.setdefault(env["message_id"], [])
        return "published"

    def collect(self) -> None:
        """Copy the acks received so far into the ledger."""
        for mid in self.ledger.produced:
            self.ledger.answers[mid] = [a["status"] for a in self.camera.ack_list if a["message_id"] == mid]

    async def close(self) -> None:
        self.camera.close()


class Dashboard:
    """An operator's /ws/dashboard/ on a thread: answers every frame and reconnects when closed, as live.js does."""

    def __init__(self, server: Server, cookie: str) -> None:
        self.server, self.cookie = server, cookie
        self.events: list[dict] = []
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        wait_until(lambda: self.connections, 10, what="the dashboard to connect")

    def detections(self) -> set[str]:
        return {e["message_id"] for e in list(self.events) if e.get("type") == "detection"}

    async def _run(self) -> None:
        headers = {"Cookie": self.cookie, "Origin": self.server.http}
        while not self._stop.is_set():
            try:
                async with websockets.connect(f"{self.server.ws}/ws/dashboard/", additional_headers=headers) as ws:
                    self.connections += 1
                    while not self._stop.is_set():
                        try:
                            frame = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
                        except asyncio.TimeoutError:
                            continue
                        self.events.extend(frame.get("events", []))
                        await ws.send('{"type": "next"}')
            except (OSError, websockets.exceptions.WebSocketException):
                await asyncio.sleep(0.5)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


class HoldingReceiver:
    """A webhook receiver that leaves the first request of each delivery unanswered (until `close`), so the worker
    sending it is caught mid-task; later requests for that delivery are answered 204."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, int]] = []  # (X-LPR-Delivery, alert id), in arrival order
        self.answered: list[str] = []
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                delivery = self.headers.get("X-LPR-Delivery", "")
                first = delivery not in {d for d, _ in receiver.requests}
                receiver.requests.append((delivery, body["alert"]["id"]))
                if first:
                    receiver._release.wait(60)
                    return
                receiver.answered.append(delivery)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads, self.http.block_on_close = True, False
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"

    def close(self) -> None:
        self._release.set()
        self.http.shutdown()
        self.http.server_close()
