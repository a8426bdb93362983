"""Reliability test helpers: one server for the module, private Redis instances, and the figures the tests write.

The tests run Daphne, MQTT bridges, Celery workers and redis-server as
subprocesses on the pytest-django test database, so they are
`django_db(transaction=True)`. Each test records what it sent, what was
stored and what was refused with `figures.record(...)` into
test-artifacts/reliability/<area>.json, which docs/reliability.md quotes.
"""

from __future__ import annotations

import re
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

from tests.mqtt.conftest import RUNNING, BridgeProcess, Mosquitto
from tests.realtime.conftest import Server, operator_cookie, start_server, token_for  # noqa: F401 (fixtures)
from tests.support import free_port, record_figures, wait_until

class Figures:
    """`figures.record(area, name, **counts)`: kept in test-artifacts/reliability/<area>.json."""

    record = staticmethod(record_figures)


@pytest.fixture(scope="session")
def figures() -> Figures:
    return Figures()


@pytest.fixture(scope="session")
def redis_db(django_db_setup):
    """This run's own Redis database, emptied once."""
    import redis
    from django.conf import settings

    assert settings.REDIS_URL, "these tests need REDIS_URL (scripts/test sets it from TEST_REDIS_URL)"
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    return settings.REDIS_URL


@pytest.fixture(scope="session")
def server(redis_db, tmp_path_factory) -> Server:
    """A Daphne server on the test database and Redis, shared by the reliability tests."""
    s = start_server(tmp_path_factory.mktemp("reliability-server"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def mqtt_bridge(django_db_setup, django_db_blocker, tmp_path_factory) -> tuple[Mosquitto, BridgeProcess]:
    """A private Mosquitto and a `run_mqtt_bridge` subprocess on the test database, shared by the session."""
    directory = tmp_path_factory.mktemp("mqtt")
    broker = Mosquitto(directory)
    with django_db_blocker.unblock():
        bridge = BridgeProcess(directory, broker.url, f"reliability-{uuid.uuid4().hex[:6]}")
    RUNNING.remove(bridge)  # lives for the session, not the test that first asked for it
    yield broker, bridge.wait_subscribed()
    bridge.kill()
    broker.stop()


@pytest.fixture
def fast_device(make_device):
    """A device whose rate limit no test here reaches (throttling is tested on its own)."""
    return lambda **fields: make_device(rate_limit_per_s=1e6, **fields)


def still_answers(server: Server) -> bool:
    """The process is alive and serving HTTP."""
    return server.proc.poll() is None and requests.get(f"{server.http}/healthz", timeout=5).status_code == 200


def scrape(server: Server) -> dict[str, float]:
    """`/metrics` as {series: value}, e.g. 'lpr_queue_depth{queue="alert_intake"}': 0."""
    text = requests.get(f"{server.http}/metrics", timeout=5).text
    return {m[1]: float(m[2]) for m in re.finditer(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M)}


class RedisServer:
    """A private redis-server on a free port, that a test may stop and start again (same port)."""

    def __init__(self, directory: Path) -> None:
        self.port, self.directory = free_port(), directory
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self.answers, 10, what=f"redis-server on {self.port}")

    def answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # an outage, not a shutdown
            self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path):
    started: list[RedisServer] = []

    def start() -> RedisServer:
        started.append(RedisServer(tmp_path))
        return started[-1]

    yield start
    for r in started:
        r.stop()
