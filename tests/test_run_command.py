"""The README's first command, on its embedded defaults, really serves.

Starts `scripts/run` with no DATABASE_URL, REDIS_URL or MQTT_URL (so: SQLite,
in-memory channel layer, eager Celery, embedded MQTT broker), then speaks
to it as a camera and as an administrator's browser would.
"""

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import requests
import websockets

from tests.factories import envelope
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "run-test-pw-42"
pytestmark = pytest.mark.slow




def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextmanager
def run_command(tmp_path, *args: str):
    """`scripts/run [args]` on embedded defaults and free ports; yields (base URL, its environment)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "MQTT_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(VAR_DIR=str(tmp_path / "var"), PORT=str(port), MQTT_EMBEDDED_PORT=str(free_port()), ADMIN_PASSWORD=ADMIN_PASSWORD)
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([str(ROOT / "scripts/run"), *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if http("GET", base + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("server did not answer /healthz within 180 s:\n" + (tmp_path / "server.log").read_text())
        yield base, env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def embedded_server(tmp_path):
    with run_command(tmp_path) as server:
        yield server


def test_run_command_serves_cameras_admin_and_static_files_on_embedded_defaults(embedded_server, tmp_path):
    base, env = embedded_server
    assert (tmp_path / "var" / "lpr.sqlite3").exists()

    key = _create_device(env, "RUNCAM1")
    status, body = http(
        "POST", base + "/api/v1/ingest/", json.dumps(envelope("RUNCAM1")).encode(),
        {"Authorization": f"Device {key}", "Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 201, body
    assert json.loads(body)["status"] == "accepted"

    assert http("GET", base + "/admin/login/")[0] == 200
    assert http("GET", base + "/static/dashboard/dashboard.css")[0] == 200
    status, chart_js = http("GET", base + "/static/vendor/chart.js/chart.umd.min.js")  # installed from npm by the setup
    assert status == 200 and b"Chart" in chart_js
    assert http("GET", base + "/api/docs/")[0] == 200


def _create_device(env: dict, device_id: str) -> str:
    created = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", "create_device", device_id, "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(created.stdout)["key"]


def _operator_cookie(base: str) -> str:
    session = requests.Session()
    login = session.get(base + "/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    session.post(base + "/accounts/login/", data={"username": "admin", "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": token},
                 headers={"Referer": base + "/accounts/login/"})  # fmt: skip
    return "; ".join(f"{k}={v}" for k, v in session.cookies.items())


def test_mqtt_on_the_embedded_broker_is_stored_acked_and_live_on_the_dashboard(embedded_server):
    """One process, no Redis: the in-process bridge's detections must reach the dashboards this server holds."""
    base, env = embedded_server
    key = _create_device(env, "RUNCAM2")
    cookie = _operator_cookie(base)
    assert "sessionid" in cookie
    acks: list[dict] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="runcam2", protocol=mqtt.MQTTv311)
    client.username_pw_set("RUNCAM2", key)
    client.on_message = lambda c, u, msg: acks.append(json.loads(msg.payload))
    client.connect("127.0.0.1", int(env["MQTT_EMBEDDED_PORT"]))
    client.subscribe("lpr/v1/devices/RUNCAM2/down/ack", qos=1)
    client.loop_start()
    env_ = envelope("RUNCAM2", protocol="mqtt", payload={"plate": "MQ 77 RUN", "confidence": 0.9})

    async def watch_dashboard():
        ws_url = base.replace("http", "ws") + "/ws/dashboard/"
        async with websockets.connect(ws_url, additional_headers={"Cookie": cookie, "Origin": base}) as dash:
            await asyncio.sleep(0.3)
            client.publish("lpr/v1/devices/RUNCAM2/up/detection", json.dumps(env_), qos=1)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                frame = json.loads(await asyncio.wait_for(dash.recv(), deadline - time.monotonic()))
                for event in frame.get("events", []):
                    if event.get("message_id") == env_["message_id"]:
                        return event
        return None

    try:
        event = asyncio.run(watch_dashboard())
        deadline = time.monotonic() + 10
        while not acks and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        client.loop_stop()
        client.disconnect()
    assert event is not None and event["type"] == "detection" and event["device_id"] == "RUNCAM2"
    assert [(a["message_id"], a["status"]) for a in acks] == [(env_["message_id"], "accepted")]


def test_demo_flag_starts_simulated_cameras_whose_reads_arrive(tmp_path):
    with run_command(tmp_path, "--demo") as (base, env):
        auth = {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()}

        def reads_of(device_id: str) -> int:
            status, body = http("GET", f"{base}/api/v1/detections/?device={device_id}", headers=auth)
            return json.loads(body)["count"] if status == 200 else 0

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(reads_of(f"DEMO0{n}") for n in (1, 2, 3)):
            time.sleep(1)
        assert all(reads_of(f"DEMO0{n}") > 0 for n in (1, 2, 3)), (tmp_path / "server.log").read_text()[-3000:]
