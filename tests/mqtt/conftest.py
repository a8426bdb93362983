"""MQTT test helpers: bridge subprocesses on the test database, private Mosquitto instances, camera clients.

Bridges run as `manage.py run_mqtt_bridge` subprocesses against the
pytest-django test database, so the tests that use them are
`django_db(transaction=True)`: the bridge only sees committed rows.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.support import free_port, server_database_url, wait_until  # noqa: F401 (re-exported to the MQTT tests)

REPO = Path(__file__).resolve().parents[2]
SHARED_BROKER = ("127.0.0.1", 1883)








RUNNING: list["BridgeProcess"] = []


@pytest.fixture(autouse=True)
def _no_bridge_outlives_its_test(request):
    """A failed test must not leave a bridge connected to the test database (it would block its teardown)."""
    before = len(RUNNING)
    yield
    while len(RUNNING) > before:
        RUNNING.pop().kill()


class BridgeProcess:
    """`manage.py run_mqtt_bridge` in a subprocess; its log is kept in a file the test can read."""

    def __init__(self, log_dir: Path, url: str, client_id: str, *args: str, database_url: str | None = None,
                 env: dict[str, str] | None = None, script: tuple[str, ...] = ("manage.py", "run_mqtt_bridge")):  # fmt: skip
        self.log_path = log_dir / f"bridge-{client_id}-{uuid.uuid4().hex[:6]}.log"
        self.args = ["--url", url, "--client-id", client_id, *args]
        env = {**os.environ, "DATABASE_URL": database_url or server_database_url(), "LOG_LEVEL": "INFO",
               "PYTHONUNBUFFERED": "1", "DB_CONN_MAX_AGE": "60", **(env or {})}  # fmt: skip
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, *script, *self.args],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        RUNNING.append(self)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_subscribed(self, timeout: float = 30.0) -> "BridgeProcess":
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"bridge exited with {self.proc.returncode}:\n{self.log()}")
            return "subscribed to" in self.log()

        wait_until(ready, timeout, what="the bridge to subscribe")
        return self

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._log.close()

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM; the exit status. A bridge still running after `timeout` is killed, and the test fails with its log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"the bridge was still running {timeout} s after SIGTERM; its log:\n{self.log()[-6000:]}") from None
        finally:
            self._log.close()


class Mosquitto:
    """A private Mosquitto on a free port, with the configuration a test needs (`{extra_port}` in `extra_conf`:
    a second free port, for a second listener)."""

    def __init__(self, directory: Path, extra_conf: str = "allow_anonymous true\n"):
        self.directory, self.extra_conf = directory, extra_conf
        self.start_on_free_ports()

    def configure(self) -> None:
        self.port, self.extra_port = free_port(), free_port()
        self.conf = self.directory / f"mosquitto-{self.port}.conf"
        self.log_path = self.directory / f"mosquitto-{self.port}.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"user {getpass.getuser()}\n"  # as root Mosquitto would switch to `mosquitto`, who cannot read tmp_path
            # Queue everything for offline persistent sessions (the default drops past 1000). Not 0 ("no limit"):
            # Mosquitto 2.0.11 then drops the connection of a client whose publish the access list denied.
            "max_queued_messages 1000000\n"
            "persistence false\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            + self.extra_conf.replace("{extra_port}", str(self.extra_port))
        )

    def start_on_free_ports(self, tries: int = 3) -> None:
        """Configure and start. A port found free can be taken by another process (an outgoing connection's
        local port) before Mosquitto binds it: then with other ports."""
        for attempt in range(tries):
            self.configure()
            try:
                return self.start()
            except AssertionError:
                taken = self.log_path.exists() and "Address already in use" in self.log_path.read_text(errors="replace")
                if not taken or attempt == tries - 1:
                    raise

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(self._listening, 10, what=f"mosquitto on {self.port}")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited: {self.proc.stderr.read().decode()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Camera:
    """A device speaking MQTT the way camera firmware does: envelopes up, acks collected from `down/#`."""

    def __init__(self, device_id: str, port: int = 1883, password: str | None = None, protocol=mqtt.MQTTv311):
        self.device_id = device_id
        self.root = f"lpr/v1/devices/{device_id}"
        self.acks: dict[str, dict] = {}
        self.ack_list: list[dict] = []
        self.down: list[tuple[str, bytes, bool]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cam-{device_id}-{uuid.uuid4().hex[:6]}",
                                  protocol=protocol)  # fmt: skip
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        if password is not None:
            self.client.username_pw_set(device_id, password)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: setattr(self, "connect_rc", rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.append(rcs)
        self.connect_rc = None
        self.subacks: list = []
        self.port = port

    def connect(self, subscribe: bool = True) -> "Camera":
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        wait_until(lambda: self.connect_rc is not None, 10, what="CONNACK")
        if subscribe and not self.connect_rc.is_failure:
            self.subscribe(f"{self.root}/down/#")
        return self

    def subscribe(self, topic: str):
        """Subscribe and return the broker's reason code."""
        before = len(self.subacks)
        self.client.subscribe(topic, qos=1)
        wait_until(lambda: len(self.subacks) > before, 10, what="SUBACK")
        return self.subacks[before][0]

    def _on_message(self, client, userdata, msg) -> None:
        self.down.append((msg.topic, msg.payload, msg.retain))
        if msg.topic.endswith("/down/ack"):
            body = json.loads(msg.payload)
            if body.get("type") != "ack":
                return  # the edge SDK's tests run a stand-in bridge on the shared broker; its acks are not ours
            self.acks[body.get("message_id")] = body
            self.ack_list.append(body)

    def publish(self, body: dict | bytes, data_type: str | None = None, topic: str | None = None):
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        topic = topic or f"{self.root}/up/{data_type or body['data_type']}"
        return self.client.publish(topic, payload, qos=1)

    def wait_ack(self, message_id: str, timeout: float = 20.0) -> dict:
        return wait_until(lambda: self.acks.get(message_id), timeout, what=f"ack for {message_id}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Stream:
    """Publishes envelopes at QoS 1 from a background thread, spread over the given devices."""

    def __init__(self, port: int, devices, count: int, per_s: float):
        from tests.factories import envelope

        self.envelopes = [envelope(devices[i % len(devices)].id, protocol="mqtt") for i in range(count)]
        self.devices, self.per_s = devices, per_s
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"stream-{uuid.uuid4().hex[:8]}")
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 1)  # back soon after a broker restart; what was unacked is resent
        self.pubacked: set[int] = set()
        self.client.on_publish = lambda client, userdata, mid, rc, props: self.pubacked.add(mid)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.infos: list = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        for n, env in enumerate(self.envelopes):
            topic = f"lpr/v1/devices/{env['edge_device_id']}/up/detection"
            self.infos.append(self.client.publish(topic, json.dumps(env), qos=1))
            delay = start + (n + 1) / self.per_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def finish(self, timeout: float = 60) -> None:
        self.thread.join(timeout)
        # The broker has every message: from here on it owns them. (Not wait_for_publish: it raises for a message
        # published while the broker was away, which paho keeps and sends once reconnected.)
        mids = {info.mid for info in self.infos}
        wait_until(lambda: mids <= self.pubacked, timeout, what="every PUBACK")
        self.client.disconnect()
        self.client.loop_stop()

    def stored(self) -> int:
        from transport.models import Message

        return Message.objects.filter(device__in=self.devices).count()

    def assert_each_stored_once(self, timeout: float = 90) -> dict:
        """Wait for every message, check each is stored once; return the reconciliation's counts."""
        from detections.models import Detection

        wanted = len(self.envelopes)
        wait_until(lambda: self.stored() >= wanted, timeout, every=0.2, what=f"{wanted} messages stored")
        time.sleep(1.0)  # anything late (a redelivery stored twice) would show now
        ids = [str(i) for i in Detection.objects.filter(device__in=self.devices).values_list("message_id", flat=True)]
        sent = {e["message_id"] for e in self.envelopes}
        assert self.stored() == wanted
        assert len(ids) == wanted and set(ids) == sent
        return {"sent": wanted, "stored": len(set(ids)), "lost": len(sent - set(ids)), "stored_twice": len(ids) - len(set(ids))}



def assert_confined(camera: "Camera", watcher: "Camera", other_id: str) -> None:
    """`camera` can neither publish into nor read from `other_id`'s topics; `watcher` (the bridge account) sees all."""
    seen: list[str] = []
    watcher.client.on_message = lambda c, u, msg: seen.append(msg.topic)
    watcher.subscribe("lpr/v1/devices/#")
    own, other = camera.root, f"lpr/v1/devices/{other_id}"
    # The SUBACK may grant this (Mosquitto 2.0 applies its access list to each message it would deliver).
    camera.subscribe(f"{other}/#")
    camera.publish(b"{}", topic=f"{other}/up/detection").wait_for_publish(5)
    camera.publish(b"{}", topic=f"{own}/up/detection").wait_for_publish(5)
    watcher.client.publish(f"{other}/down/ack", b"{}", qos=1).wait_for_publish(5)
    watcher.client.publish(f"{own}/down/ack", b"{}", qos=1).wait_for_publish(5)

    # Each pair was sent in order, so once the second of a pair has arrived, the first would have too.
    wait_until(lambda: f"{own}/up/detection" in seen, what="the device's own message")
    wait_until(lambda: camera.down, what="the device's own down/ack")
    assert f"{other}/up/detection" not in seen
    assert [topic for topic, _, _ in camera.down] == [f"{own}/down/ack"]


@pytest.fixture(scope="session")
def shared_bridge(django_db_setup, django_db_blocker, tmp_path_factory):
    """One bridge on the shared Mosquitto (127.0.0.1:1883) for the whole run, on the test database."""
    with django_db_blocker.unblock():
        bridge = BridgeProcess(
            tmp_path_factory.mktemp("bridge"), f"mqtt://{SHARED_BROKER[0]}:{SHARED_BROKER[1]}",
            f"lpr-test-bridge-{uuid.uuid4().hex[:8]}", "--session-expiry", "60",
        )  # fmt: skip
    RUNNING.remove(bridge)  # lives for the session, not the test that first asked for it
    bridge.wait_subscribed()
    yield bridge
    assert bridge.terminate() == 0, bridge.log()


@pytest.fixture
def cameras():
    opened: list[Camera] = []

    def open_camera(device, port: int = 1883, password: str | None = None, **kwargs) -> Camera:
        camera = Camera(device.id, port, password, **kwargs).connect()
        opened.append(camera)
        return camera

    yield open_camera
    for camera in opened:
        camera.close()


@pytest.fixture
def mosquitto(tmp_path):
    started: list[Mosquitto] = []

    def start(extra_conf: str = "allow_anonymous true\n") -> Mosquitto:
        broker = Mosquitto(tmp_path, extra_conf)
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()
