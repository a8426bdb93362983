"""Device tests' servers: a Daphne server, a private Mosquitto with a bridge, camera clients for each transport.

Everything runs against the test database (so tests using these are
`django_db(transaction=True)`: other processes only see committed rows), the
test Redis, and a private Mosquitto, so that our bridge never hears other
test runs' cameras on the shared broker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
import warnings
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.factories import envelope
from tests.mqtt.conftest import BridgeProcess, Camera, Mosquitto, server_database_url, wait_until
from tests.realtime.conftest import start_server

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    instance = Mosquitto(tmp_path_factory.mktemp("devices-mosquitto"))
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def server(django_db_setup, django_db_blocker, broker, tmp_path_factory):
    """One Daphne process on the test database, the test Redis and the private broker."""
    with django_db_blocker.unblock():
        instance = start_server(tmp_path_factory.mktemp("devices-server"), MQTT_URL=broker.url)
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def bridge(django_db_setup, django_db_blocker, broker, tmp_path_factory):
    with django_db_blocker.unblock():
        process = BridgeProcess(tmp_path_factory.mktemp("devices-bridge"), broker.url,
                                f"lpr-devices-bridge-{uuid.uuid4().hex[:6]}", "--session-expiry", "60")  # fmt: skip
    process.wait_subscribed()
    yield process
    if status := process.terminate():  # a shutdown the watchdog had to end: its log holds every thread's stack
        warnings.warn(f"the devices bridge exited with {status} after SIGTERM; its log:\n{process.log()[-6000:]}")


@pytest.fixture
def downlink_to(broker, settings):
    """The test process publishes (devices.channels → transport.mqtt.downlink) to the private broker."""
    from transport.mqtt import downlink

    downlink.close()
    settings.MQTT_URL = broker.url
    yield
    downlink.close()


class WsCamera:
    """A camera on `/ws/device/`: frames it receives are collected on a thread; pings are answered."""

    def __init__(self, server, device):
        from transport import auth

        token, _ = auth.issue_token(device)
        self.device = device
        self.frames: list[dict] = []
        self.acks: dict[str, dict] = {}
        self.socket = connect(f"{server.ws}/ws/device/?token={token}", open_timeout=10)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for raw in self.socket:
                if isinstance(raw, bytes):
                    continue
                frame = json.loads(raw)
                if frame.get("type") == "ack":
                    self.acks[frame["message_id"]] = frame
                    continue
                self.frames.append(frame)
                if frame.get("type") == "ping":
                    self.socket.send(json.dumps({"type": "pong", "sent_at": frame["sent_at"]}))
        except Exception:
            pass

    def of_type(self, kind: str) -> list[dict]:
        return [f for f in self.frames if f.get("type") == kind]

    def wait_frame(self, kind: str, timeout: float = 10.0) -> dict:
        return wait_until(lambda: (self.of_type(kind) or [None])[-1], timeout, what=f"a {kind} frame")

    def send_envelope(self, data_type: str, payload: dict) -> dict:
        env = envelope(self.device.id, data_type, payload, protocol="websocket")
        self.socket.send(json.dumps(env))
        return wait_until(lambda: self.acks.get(env["message_id"]), 10, what="the ack")

    def answer(self, command_id: str, status: str) -> dict:
        return self.send_envelope("control", {"command_id": command_id, "status": status})

    def close(self) -> None:
        self.socket.close()
        self._reader.join(5)


@pytest.fixture
def ws_cameras(server):
    opened: list[WsCamera] = []

    def open_camera(device) -> WsCamera:
        camera = WsCamera(server, device)
        opened.append(camera)
        from devices import channels

        wait_until(lambda: channels.live_transports(device.id), 10, what="the socket in presence")
        return camera

    yield open_camera
    for camera in opened:
        camera.close()


class MqttCamera(Camera):
    """The MQTT test camera, also announcing itself on the status topic as firmware does."""

    def online(self) -> "MqttCamera":
        self.client.publish(f"{self.root}/status", b"online", qos=1, retain=True).wait_for_publish(5)
        return self

    def answer(self, command_id: str, status: str) -> dict:
        env = envelope(self.device_id, "control", {"command_id": command_id, "status": status}, protocol="mqtt")
        self.publish(env)
        return self.wait_ack(env["message_id"])

    def received(self, leaf: str) -> list[dict]:
        return [json.loads(p) for t, p, _ in self.down if t.endswith(f"/down/{leaf}")]


@pytest.fixture
def mqtt_cameras(broker, bridge):
    opened: list[MqttCamera] = []

    def open_camera(device) -> MqttCamera:
        camera = MqttCamera(device.id, broker.port).connect()
        opened.append(camera)
        return camera

    yield open_camera
    for camera in opened:
        camera.close()


CAMERA_WITH_WILL = """
import sys, time
import paho.mqtt.client as mqtt
device_id, port = sys.argv[1], int(sys.argv[2])
topic = f"lpr/v1/devices/{device_id}/status"
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"will-{device_id}")
c.will_set(topic, b"offline", qos=1, retain=True)
c.connect("127.0.0.1", port, keepalive=5)
c.loop_start()
c.publish(topic, b"online", qos=1, retain=True).wait_for_publish(5)
print("online", flush=True)
time.sleep(600)
"""


@pytest.fixture
def camera_process(broker):
    """A camera firmware stand-in in its own process (so it can die), with a last will on its status topic."""
    started: list[subprocess.Popen] = []

    def start(device_id: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", CAMERA_WITH_WILL, device_id, str(broker.port)],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout.readline().strip() == "online"
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


@pytest.fixture
def watcher(tmp_path, broker):
    """`manage.py run_device_watch` in a subprocess on the test database."""
    procs: list[subprocess.Popen] = []

    def start(**env: str) -> subprocess.Popen:
        from django.conf import settings

        full = {**os.environ, "DATABASE_URL": server_database_url(), "REDIS_URL": settings.REDIS_URL,
                "MQTT_URL": broker.url, "PYTHONUNBUFFERED": "1", **env}  # fmt: skip
        log = open(tmp_path / f"watch-{len(procs)}.log", "w")
        proc = subprocess.Popen([sys.executable, "manage.py", "run_device_watch", "--interval", "0.2"], cwd=REPO,
                                env=full, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        procs.append(proc)
        wait_until(lambda: "device watch running" in (tmp_path / f"watch-{len(procs) - 1}.log").read_text(), 30,
                   what="the watcher to start")  # fmt: skip
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def transitions(command) -> list[tuple[str, str]]:
    return [(t.state, t.transport) for t in command.transitions.order_by("at", "id")]
