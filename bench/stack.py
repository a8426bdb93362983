"""Starting the real server for a benchmark: a fresh PostgreSQL database, migrations, a device, Daphne.

`Stack` starts the whole production layout on this machine (README, "Running
it for real"; docs/deployment.md): Daphne (`manage.py serve --no-mqtt
--no-watch` with REDIS_URL; with `web` > 1, that many behind nginx),
`run_mqtt_bridge` against a private Mosquitto, a Celery worker (alert
matching) and `run_device_watch`, each its own process, logging to files.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv/bin/python")
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres:postgres@127.0.0.1:5432/postgres")
# Extra run_mqtt_bridge options to try (e.g. "--lanes 1 --batch 1000"), for comparing bridge settings.
BRIDGE_ARGS = os.environ.get("BENCH_BRIDGE_ARGS", "").split()


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def fresh_database(name: str) -> str:
    """Drop and create database `name`, migrate it, and return its URL."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url(name)
    say(f"migrating {name}")
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=server_env(url), check=True)
    return url


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "MQTT_URL"}}
    env.update(DATABASE_URL=database_url, DEVICE_RATE_PER_S="1000000000", DEVICE_RATE_BURST="1000000000",
               LOG_LEVEL="WARNING", **extra)  # fmt: skip
    return env


def create_device(database_url: str, device_id: str) -> dict:
    out = subprocess.run(
        [PYTHON, "manage.py", "create_device", device_id, "--json"],
        cwd=ROOT, env=server_env(database_url), capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)
        return True
    except OSError:
        return False


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise SystemExit("bench: nginx is not installed (bench/run installs it; or run with --web 1)")
    return found


@contextmanager
def daphne(database_url: str, **extra_env: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, "manage.py", "serve", "--port", str(port)], cwd=ROOT, env=server_env(database_url, **extra_env)
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(base + "/healthz"), 30, "the server to answer /healthz", every=0.25)
        say(f"server up on {base} (pid {proc.pid})")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


MOSQUITTO_CONF = """listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000000
max_queued_bytes 0
max_inflight_messages 1000
set_tcp_nodelay true
"""


# The upstream of docs/deploy/nginx/lpr.conf (least_conn, keep-alive, WebSocket upgrades, forwarded address), in
# plain HTTP: TLS would cost nginx and the load generators, not the server.
NGINX_CONF = """{user}daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/nginx-body;
    proxy_temp_path {dir}/nginx-proxy;
    upstream lpr_web {{
        least_conn;
{servers}
        keepalive 64;
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 17m;
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_read_timeout 1h;
        location / {{
            proxy_pass http://lpr_web;
        }}
    }}
}}
"""


def nginx_conf(directory: Path, port: int, upstream_ports: list[int]) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstream_ports)
    # As root, nginx's workers would switch to a user who cannot write the run's (private) folder.
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    return NGINX_CONF.format(user=user, dir=directory, port=port, servers=servers)


def web_role(index: int) -> str:
    """Process names of the web processes: daphne, daphne2, daphne3…"""
    return "daphne" if index == 0 else f"daphne{index + 1}"


def bridge_role(index: int) -> str:
    """Process names of the MQTT bridges: bridge, bridge2, bridge3…"""
    return "bridge" if index == 0 else f"bridge{index + 1}"


class Stack:
    """The server's processes on one database, one Redis db and a private Mosquitto; `procs` by name.

    `web` Daphne processes: one answers on `port` itself; more sit behind nginx on `port`, as in production.
    `bridges` MQTT bridges: more than one split the stream on a shared subscription, as in production."""

    def __init__(self, database_url: str, redis_url: str, log_dir: Path, web: int = 1, bridges: int = 1) -> None:
        self.database_url, self.redis_url, self.log_dir, self.web = database_url, redis_url, log_dir, web
        self.bridges = bridges
        self.procs: dict[str, subprocess.Popen] = {}
        self.port, self.mqtt_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = server_env(database_url, REDIS_URL=redis_url, LPR_BENCH_VIEWS="1", DEVICE_TOKEN_TTL_S="86400",
                              PYTHONUNBUFFERED="1")  # fmt: skip

    def start(self) -> "Stack":
        conf = self.log_dir / "mosquitto.conf"
        conf.write_text(MOSQUITTO_CONF.format(port=self.mqtt_port) + f"user {os.environ.get('USER', 'root')}\n")
        self._spawn("mosquitto", ["mosquitto", "-c", str(conf)])
        manage = [PYTHON, "manage.py"]
        web_ports = [self.port] if self.web == 1 else [free_port() for _ in range(self.web)]
        self.web_urls = [f"http://127.0.0.1:{port}" for port in web_ports]  # each process's own /metrics
        for n, port in enumerate(web_ports):
            self._spawn(web_role(n), [*manage, "serve", "--no-mqtt", "--no-watch", "--port", str(port)])
        shared = ["--shared", "bench"] if self.bridges > 1 else []
        for n in range(self.bridges):
            self._spawn(bridge_role(n), [*manage, "run_mqtt_bridge", "--url", f"mqtt://127.0.0.1:{self.mqtt_port}",
                                         "--client-id", f"bench-{bridge_role(n)}", *shared, *BRIDGE_ARGS], LOG_LEVEL="INFO")  # fmt: skip
        self._spawn("worker", [PYTHON, "-m", "celery", "-A", "lpr_server", "worker", "--pool", "threads",
                               "--concurrency", "2", "--loglevel", "INFO",
                               "--without-gossip", "--without-mingle", "--without-heartbeat"])  # fmt: skip
        self._spawn("watch", [*manage, "run_device_watch"])
        for n, port in enumerate(web_ports):  # each on its own: through nginx one answering would do
            wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 60, f"{web_role(n)} to answer /healthz",
                     every=0.25)  # fmt: skip
        if self.web > 1:
            conf = self.log_dir / "nginx.conf"
            conf.write_text(nginx_conf(self.log_dir, self.port, web_ports))
            self._spawn("nginx", [nginx_binary(), "-p", str(self.log_dir), "-e", str(self.log_dir / "nginx-error.log"),
                                  "-c", str(conf)])  # fmt: skip
            wait_for(lambda: answers(self.base + "/healthz"), 30, "nginx to answer /healthz", every=0.1)
        for n in range(self.bridges):
            wait_for(lambda: "subscribed to" in self.log(bridge_role(n)), 60, f"the MQTT {bridge_role(n)} to subscribe")
        wait_for(lambda: " ready." in self.log("worker"), 60, "the Celery worker to be ready")
        say(f"stack up: Daphne {self.base}, Mosquitto :{self.mqtt_port}, "
            + ", ".join(f"{name} pid {p.pid}" for name, p in self.procs.items()))  # fmt: skip
        return self

    def roles(self) -> dict[str, list[int]]:
        """Process groups for the sampler: every web process counts as Daphne, every bridge as the bridge."""
        groups: dict[str, list[int]] = {}
        for name, proc in self.procs.items():
            role = next((r for r in ("daphne", "bridge") if name.startswith(r)), name)
            groups.setdefault(role, []).append(proc.pid)
        return groups

    def _spawn(self, name: str, argv: list[str], **env: str) -> None:
        out = (self.log_dir / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen(
            argv, cwd=ROOT, env={**self.env, **env}, stdout=out, stderr=subprocess.STDOUT
        )

    def log(self, name: str) -> str:
        self.check(name)
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def check(self, *names: str) -> None:
        """Stop the benchmark when a server process has died (its log says why)."""
        for name in names or tuple(self.procs):
            if self.procs[name].poll() is not None:
                raise SystemExit(
                    f"bench: {name} exited with {self.procs[name].returncode}; see {self.log_dir / name}.log"
                )

    def stop(self) -> None:
        for proc in reversed(self.procs.values()):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
