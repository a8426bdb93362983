"""The README's first command, on its embedded defaults, really serves.

Starts `scripts/run` with no DATABASE_URL, REDIS_URL or MQTT_URL (so: SQLite,
in-memory channel layer, eager Celery, embedded MQTT broker), then speaks
to it as a camera and as an administrator's browser would.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.factories import envelope

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def embedded_server(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "MQTT_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(VAR_DIR=str(tmp_path / "var"), PORT=str(port), MQTT_EMBEDDED_PORT=str(free_port()), ADMIN_PASSWORD="run-test-pw-42")
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([str(ROOT / "scripts/run")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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


def test_run_command_serves_cameras_admin_and_static_files_on_embedded_defaults(embedded_server, tmp_path):
    base, env = embedded_server
    assert (tmp_path / "var" / "lpr.sqlite3").exists()

    created = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", "create_device", "RUNCAM1", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = json.loads(created.stdout)["key"]
    status, body = http(
        "POST", base + "/api/v1/ingest/", json.dumps(envelope("RUNCAM1")).encode(),
        {"Authorization": f"Device {key}", "Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 201, body
    assert json.loads(body)["status"] == "accepted"

    assert http("GET", base + "/admin/login/")[0] == 200
    assert http("GET", base + "/static/css/site.css")[0] == 200
    assert http("GET", base + "/api/docs/")[0] == 200
