"""The example deployment files (docs/deploy/) name real commands and settings, and their programs accept them."""

from __future__ import annotations

import ast
import http.server
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import requests
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError

from tests.mqtt.conftest import Camera, assert_confined
from tests.support import free_port

from .processes import Nginx, ShippedMosquitto, self_signed_certificate
from .shipped import (
    DEPLOY, ENV_FILE_PATH, INSTALL_DIR, REPO, SYSTEMD, env_file, exec_start, nginx_site, unit, unit_names,
    web_ports_in_target,
)  # fmt: skip

SERVICES = [name for name in unit_names() if name.endswith(".service")]
# Where the project reads its settings from the environment: settings.py, and commands reading os.environ.
PROJECT_PACKAGES = ["lpr_server", "devices", "detections", "transport"]


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_runs_a_command_of_this_checkout_with_options_it_accepts(name):
    service = unit(name)["Service"]
    assert service["WorkingDirectory"] == INSTALL_DIR and service["EnvironmentFile"] == ENV_FILE_PATH
    assert service["User"] == "lpr"
    argv = exec_start(name, instance="8001")
    assert Path(argv[0]).exists(), f"{name}: {argv[0]} is not in this checkout's venv"
    if argv[1] == "manage.py":
        command, options = argv[2], argv[3:]
        app = _app_of_command(command)
        parser = load_command_class(app, command).create_parser("manage.py", command)
        try:
            parser.parse_args(options)
        except CommandError as exc:
            pytest.fail(f"{name}: manage.py {command} refuses {options}: {exc}")
    else:
        assert Path(argv[0]).name == "celery" and argv[1:3] == ["-A", "lpr_server"], argv
        subcommand, options = argv[3], argv[4:]
        usage = subprocess.run([*argv[:4], "--help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
        known = set(re.findall(r"--[a-z][a-z0-9-]*", usage))
        assert {o for o in options if o.startswith("--")} <= known, f"celery {subcommand} has no {options}"


def test_the_target_starts_units_that_exist_and_nginx_balances_exactly_its_web_processes():
    wants = unit("lpr.target")["Unit"]["Wants"].split()
    shipped = set(unit_names())
    for wanted in wants:
        template = re.sub(r"@[^.]+\.", "@.", wanted)
        assert wanted in shipped or template in shipped, f"lpr.target wants {wanted}, which is not shipped"
    started = {re.sub(r"@[^.]+\.", "@.", w) for w in wants}
    started |= {w.replace(".timer", ".service") for w in started}  # a timer starts its service
    assert shipped - {"lpr.target"} <= started, f"lpr.target starts none of {shipped - started - {'lpr.target'}}"

    site = (DEPLOY / "nginx" / "lpr.conf").read_text()
    upstreams = dict(re.findall(r"upstream (\w+) \{(.*?)\}", site, re.S))
    assert set(upstreams) == {"lpr_web", "lpr_web_sticky"}
    for name, body in upstreams.items():
        ports = sorted(int(p) for p in re.findall(r"server 127\.0\.0\.1:(\d+);", body))
        assert ports == web_ports_in_target(), f"nginx upstream {name} and lpr.target list different web processes"


def test_each_bridge_instance_has_a_client_id_of_its_own():
    # Two bridges under one client id would take the broker session from each other in turn.
    ids = {tuple(exec_start("lpr-mqtt-bridge@.service", instance=n)) for n in ("1", "2")}
    assert len(ids) == 2 and all("--client-id" in argv for argv in ids)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_every_unit_without_a_warning(tmp_path):
    for name in unit_names():
        text = (SYSTEMD / name).read_text().replace(INSTALL_DIR, str(REPO))
        (tmp_path / name).write_text(text)
    units = [str(tmp_path / n.replace("@.", "@1.")) for n in unit_names()]
    for name in unit_names():
        if "@." in name:
            shutil.copy(tmp_path / name, tmp_path / name.replace("@.", "@1."))
    verified = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, cwd=tmp_path)
    assert (verified.returncode, verified.stderr.strip()) == (0, ""), verified.stderr


def test_the_env_file_sets_only_settings_the_server_reads_and_agrees_with_the_broker_files():
    values = env_file()
    unknown = set(values) - _environment_names_read_by_the_project()
    assert not unknown, f"lpr.env sets variables nothing reads: {sorted(unknown)}"
    example = (REPO / ".env.example").read_text()
    assert not [n for n in values if n not in example], "every lpr.env variable is documented in .env.example"

    mqtt_url = urllib.parse.urlsplit(values["MQTT_URL"])
    assert (mqtt_url.username, mqtt_url.password) == (values["MQTT_BRIDGE_USERNAME"], values["MQTT_BRIDGE_PASSWORD"])
    broker = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    assert f"listener {mqtt_url.port} {mqtt_url.hostname}\n" in broker, "MQTT_URL is the broker's bridge listener"


def test_the_shipped_broker_sends_small_packets_at_once():
    """Mosquitto leaves Nagle's algorithm on by default: each MQTT round trip then waited ~40 ms for a delayed
    ACK (bench: MQTT ack p50 39 ms at 200 messages/s, 12-16 ms without). The run of the shipped config below
    shows Mosquitto accepts the option."""
    lines = [line.strip() for line in (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines()]
    assert "set_tcp_nodelay true" in lines


def test_the_server_starts_its_checks_on_the_env_file_values(tmp_path):
    values = {**env_file(), "VAR_DIR": str(tmp_path), "MEDIA_ROOT": str(tmp_path / "media")}
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **values}
    checked = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=REPO, env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "System check identified" in checked.stdout + checked.stderr


def test_nginx_takes_the_site_redirects_to_https_and_keeps_metrics_inside(tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    https, http = free_port(), free_port()
    proxy = Nginx(tmp_path / "nginx", nginx_site([free_port(), free_port()], https, http, cert, key), https)
    try:
        redirect = requests.get(f"http://127.0.0.1:{http}/api/v1/devices/?page=2", allow_redirects=False, timeout=5)
        assert redirect.status_code == 301
        assert redirect.headers["Location"] == "https://127.0.0.1/api/v1/devices/?page=2"
        metrics = requests.get(f"https://127.0.0.1:{https}/metrics", verify=str(cert), timeout=5)
        assert metrics.status_code == 403
        assert metrics.headers["Strict-Transport-Security"] == "max-age=31536000"
        no_server = requests.get(f"https://127.0.0.1:{https}/healthz", verify=str(cert), timeout=5)
        assert no_server.status_code == 502  # both upstreams down: nginx says so, it does not hang
    finally:
        proxy.stop()


@pytest.mark.django_db
def test_mosquitto_runs_the_shipped_config_with_tls_for_cameras_and_their_access_list(
    make_device, tmp_path, monkeypatch
):
    values = env_file()
    monkeypatch.setenv("MQTT_BRIDGE_USERNAME", values["MQTT_BRIDGE_USERNAME"])
    monkeypatch.setenv("MQTT_BRIDGE_PASSWORD", values["MQTT_BRIDGE_PASSWORD"])
    device, other = make_device(), make_device()
    call_command("mqtt_credentials", out=str(tmp_path / "credentials"))
    cert, key = self_signed_certificate(tmp_path)
    broker = ShippedMosquitto(tmp_path, tmp_path / "credentials", cert, key)
    opened: list[Camera] = []

    def connect(client_id: str, port: int, password: str | None, tls: bool, **kwargs) -> Camera:
        camera = Camera(client_id, port, password, **kwargs)
        if tls:
            camera.client.tls_set(ca_certs=str(cert))
        opened.append(camera.connect(subscribe=False))
        return camera

    try:
        bridge = connect(values["MQTT_BRIDGE_USERNAME"], broker.port, values["MQTT_BRIDGE_PASSWORD"], tls=False)
        camera = connect(device.id, broker.tls_port, device.issued.key, tls=True, protocol=mqtt.MQTTv5)
        anonymous = connect(device.id, broker.tls_port, None, tls=True)
        assert not bridge.connect_rc.is_failure and not camera.connect_rc.is_failure
        assert anonymous.connect_rc.is_failure
        camera.subscribe(f"{camera.root}/down/#")
        assert_confined(camera, bridge, other.id)
    finally:
        for client in opened:
            client.close()
        broker.stop()


def _app_of_command(command: str) -> str:
    for app in PROJECT_PACKAGES:
        if (REPO / app / "management" / "commands" / f"{command}.py").exists():
            return app
    raise AssertionError(f"no project app has a management command {command!r}")


def _environment_names_read_by_the_project() -> set[str]:
    """Names passed to django-environ (`env("X")`, `env.int("X")`, …) or looked up in os.environ."""
    names = set()
    for package in PROJECT_PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                    if _reads_environment(node.func):
                        names.add(node.args[0].value)
    return names


def _reads_environment(func: ast.expr) -> bool:
    text = ast.unparse(func)
    return text == "env" or text.startswith("env.") or text in ("os.environ.get", "os.getenv")


def test_nginx_lets_camera_format_pictures_through_and_caps_every_other_body(tmp_path):
    """A camera-format webhook may carry 20 MiB of pictures; elsewhere the cap is a REST batch's 16 MiB (and a bit)."""
    received: list[int] = []

    class Upstream(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(len(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    cert, key = self_signed_certificate(tmp_path)
    https, http_port = free_port(), free_port()
    site = nginx_site([upstream.server_address[1], upstream.server_address[1]], https, http_port, cert, key)
    proxy = Nginx(tmp_path / "nginx", site, https)
    body = b"x" * (18 * 1024 * 1024)

    def post(path: str) -> requests.Response:
        return requests.post(f"https://127.0.0.1:{https}{path}", data=body, verify=str(cert), timeout=30)

    try:
        assert post("/api/v1/compat/hikvision/").status_code == 200
        assert post("/api/v1/ingest/batch/").status_code == 413
        assert received == [len(body)]  # the refused body never reached the server
    finally:
        proxy.stop()
        upstream.shutdown()
