"""Starting the real server for a benchmark: a fresh PostgreSQL database, migrations, a device, Daphne.

`Stack` starts the whole production layout on this machine (README, "Running
it for real"): Daphne (`manage.py serve --no-mqtt --no-watch`) with REDIS_URL,
`run_mqtt_bridge` against a private Mosquitto, a Celery worker (alert
matching) and `run_device_watch`, each its own process, logging to files.
"""

from __future__ import annotations

import json
import os
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
"""


class Stack:
    """The server's processes on one database, one Redis db and a private Mosquitto; `procs` by role."""

    def __init__(self, database_url: str, redis_url: str, log_dir: Path) -> None:
        self.database_url, self.redis_url, self.log_dir = database_url, redis_url, log_dir
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
        self._spawn("daphne", [*manage, "serve", "--no-mqtt", "--no-watch", "--port", str(self.port)])
        self._spawn("bridge", [*manage, "run_mqtt_bridge", "--url", f"mqtt://127.0.0.1:{self.mqtt_port}",
                               "--client-id", "bench-bridge"], LOG_LEVEL="INFO")  # fmt: skip
        self._spawn("worker", [PYTHON, "-m", "celery", "-A", "lpr_server", "worker", "--pool", "threads",
                               "--concurrency", "2", "--loglevel", "INFO",
                               "--without-gossip", "--without-mingle", "--without-heartbeat"])  # fmt: skip
        self._spawn("watch", [*manage, "run_device_watch"])
        wait_for(lambda: answers(self.base + "/healthz"), 60, "Daphne to answer /healthz", every=0.25)
        wait_for(lambda: "subscribed to" in self.log("bridge"), 60, "the MQTT bridge to subscribe")
        wait_for(lambda: " ready." in self.log("worker"), 60, "the Celery worker to be ready")
        say(f"stack up: Daphne {self.base}, Mosquitto :{self.mqtt_port}, "
            + ", ".join(f"{name} pid {p.pid}" for name, p in self.procs.items()))  # fmt: skip
        return self

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
