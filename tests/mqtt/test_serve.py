"""`manage.py serve` with no MQTT_URL: an embedded broker and a bridge beside Daphne, stopped with it."""

import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

from tests.factories import envelope
from transport.models import Message

from .conftest import REPO, Camera, server_database_url, free_port, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_serve_without_mqtt_url_runs_an_embedded_broker_and_bridge_and_stops_them(device, tmp_path):
    web_port, mqtt_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "MQTT_URL"}
    env.update(DATABASE_URL=server_database_url(), MQTT_EMBEDDED_PORT=str(mqtt_port), LOG_LEVEL="INFO")
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(web_port)], cwd=REPO, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until(lambda: _healthy(web_port), 60, every=0.2, what="/healthz")
        wait_until(lambda: "subscribed to" in log_path.read_text(), 30, what="the bridge to subscribe")
        bridge_pid = int(re.search(r"MQTT bridge started \(pid (\d+)\)", log_path.read_text()).group(1))

        camera = Camera(device.id, mqtt_port, device.issued.key).connect()
        env_ = envelope(device.id, protocol="mqtt")
        camera.publish(env_)
        assert camera.wait_ack(env_["message_id"])["status"] == "accepted"
        assert Message.objects.get(message_id=env_["message_id"]).received_via == "mqtt"
        camera.close()

        server.send_signal(signal.SIGTERM)
        server.wait(30)
        wait_until(lambda: not _alive(bridge_pid), 10, what="the bridge to exit")
        assert "stopped after settling" in log_path.read_text()
    finally:
        if server.poll() is None:
            server.kill()


def _healthy(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = open(f"/proc/{pid}/stat").read().split()[2] if os.path.exists(f"/proc/{pid}/stat") else "X"
    return status != "Z"
