"""Real-time test helpers: Daphne servers on the pytest-django test database, camera and operator sockets.

Servers are subprocesses (`daphne lpr_server.asgi:application`) sharing the
test database and the test Redis, so tests that use them are
`django_db(transaction=True)`: a server only sees committed rows. Two of them
(`servers.a`, `servers.b`) run for the whole session on the Redis channel
layer; tests that need other settings start their own with `start_server`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.support import free_port, server_database_url, wait_until  # noqa: F401 (re-exported to the real-time tests)

REPO = Path(__file__).resolve().parents[2]
JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF\x00" + b"\x11" * 2000 + b"\xff\xd9"








@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_server(log_dir: Path, command: list[str] | None = None, **env_overrides: str) -> Server:
    """Start Daphne on a free port with the test database and Redis (unless overridden) and wait for /healthz."""
    from django.conf import settings

    port = free_port()
    env = {**os.environ, "DATABASE_URL": server_database_url(), "REDIS_URL": settings.REDIS_URL,
           "DEVICE_RATE_BURST": "1000", "REALTIME_PING_INTERVAL_S": "0.5", "LOG_LEVEL": "WARNING",
           "MQTT_EMBEDDED_PORT": str(free_port()), "PYTHONUNBUFFERED": "1", **env_overrides}  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log_path = log_dir / f"server-{port}.log"
    cmd = command or [str(REPO / ".venv/bin/daphne"), "-b", "127.0.0.1", "-p", str(port), "lpr_server.asgi:application"]
    cmd = [part.replace("{port}", str(port)) for part in cmd]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, port, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("server exited:\n" + server.log())
        try:
            with urllib.request.urlopen(server.http + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise AssertionError("server did not answer /healthz within 60 s:\n" + server.log())


@dataclass
class Pair:
    a: Server
    b: Server


@pytest.fixture(scope="session")
def servers(django_db_setup, tmp_path_factory):
    """Two server processes on the Redis channel layer, for the whole session."""
    import redis
    from django.conf import settings

    assert settings.REDIS_URL, "these tests need REDIS_URL (scripts/test sets it from TEST_REDIS_URL)"
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # this run's own Redis database: stale presence, old groups
    log_dir = tmp_path_factory.mktemp("servers")
    a = start_server(log_dir)
    try:
        b = start_server(log_dir)
    except BaseException:
        a.stop()
        raise
    yield Pair(a, b)
    a.stop()
    b.stop()


@pytest.fixture
def private_servers(tmp_path):
    """Start servers with settings of their own; they are stopped after the test."""
    started: list[Server] = []

    def start(command: list[str] | None = None, **env: str) -> Server:
        started.append(start_server(tmp_path, command, **env))
        return started[-1]

    yield start
    for server in started:
        server.stop()


# --- clients -----------------------------------------------------------------------------------------


@pytest.fixture
def token_for():
    from transport.auth import issue_token

    return lambda device: issue_token(device)[0]


@pytest.fixture
def operator_cookie(transactional_db):
    """The session cookie of a logged-in operator, as a browser would send it."""
    from django.test import Client

    from tests.factories import OperatorFactory

    client = Client()
    client.force_login(OperatorFactory())
    return f"sessionid={client.cookies['sessionid'].value}"


def operator_headers(server: Server, cookie: str) -> dict[str, str]:
    return {"Cookie": cookie, "Origin": server.http}


async def recv_frame(ws, want: Callable[[Any], bool] = lambda f: True, timeout: float = 10.0) -> Any:
    """The next frame `want` accepts (JSON text decoded, binary as bytes), skipping others such as pings."""
    deadline = time.monotonic() + timeout
    while True:
        raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        frame = raw if isinstance(raw, bytes) else json.loads(raw)
        if want(frame):
            return frame


def is_type(kind: str) -> Callable[[Any], bool]:
    return lambda frame: isinstance(frame, dict) and frame.get("type") == kind


async def acks_for(ws, message_ids: list[str], timeout: float = 10.0) -> dict[str, dict]:
    """Collect the acks of `message_ids` (in any order), skipping other frames."""
    pending, acks = set(message_ids), {}
    while pending:
        ack = await recv_frame(ws, is_type("ack"), timeout)
        if ack.get("message_id") in pending:
            pending.discard(ack["message_id"])
            acks[ack["message_id"]] = ack
    return acks


async def in_thread(fn: Callable, *args: Any) -> Any:
    """Run blocking Django code off the event loop, closing that thread's database connection after."""

    def call():
        from django.db import connection

        try:
            return fn(*args)
        finally:
            connection.close()  # an open connection would keep the test database from being dropped

    return await asyncio.to_thread(call)


def dump(env: dict) -> str:
    return json.dumps(env)
