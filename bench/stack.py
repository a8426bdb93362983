"""Starting the real server for a benchmark: a fresh PostgreSQL database, migrations, a device, Daphne."""

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
from typing import Iterator

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


def fresh_database(name: str) -> str:
    """Drop and create database `name`, migrate it, and return its URL."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
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


@contextmanager
def daphne(database_url: str, **extra_env: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, "manage.py", "serve", "--port", str(port)], cwd=ROOT, env=server_env(database_url, **extra_env)
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.25)
        else:
            raise RuntimeError("the server did not answer /healthz within 30 s")
        say(f"server up on {base} (pid {proc.pid})")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
