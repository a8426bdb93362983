"""Helpers for tests that start real processes (servers, bridges, workers) beside pytest.

No Django import at module level: tests/edge uses this module too.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import requests

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Answering(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.server.answer()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def http_servers(*answers: Callable[[], bytes]) -> Iterator[list[ThreadingHTTPServer]]:
    """One HTTP server on 127.0.0.1 per `answer`, each answering every GET with what its `answer()` returns."""
    servers = []
    for answer in answers:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
        server.answer = answer
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        yield servers
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, every: float = 0.05, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def server_database_url(**overrides: Any) -> str:
    """The pytest-django test database as a URL, for server subprocesses (`HOST`/`PORT` overridable, e.g. a proxy)."""
    from django.db import connection

    s = {**connection.settings_dict, **overrides}
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class FaultProxyProcess:
    """`python -m edge.faultproxy` in front of `target` (e.g. PostgreSQL), steered over its control port:
    `proxy.act("drop", on=1)`, `act("cut")`, `act("blackhole", on=1)`, `act("restore")`."""

    def __init__(self, target: str = "127.0.0.1:5432") -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "edge.faultproxy", "--target", target], cwd=REPO,
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        ports = json.loads(self.proc.stdout.readline())
        self.port, self._control = ports["listen"], f"http://127.0.0.1:{ports['control']}"

    def act(self, action: str, **query: Any) -> dict:
        return requests.post(f"{self._control}/{action}", params=query, timeout=5).json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


ARTIFACTS = REPO / "test-artifacts" / "reliability"


def record_figures(area: str, name: str, **values: Any) -> None:
    """Keep a test's counts in test-artifacts/reliability/<area>.json (docs/reliability.md quotes them)."""
    from datetime import datetime, timezone

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{area}.json"
    entries = json.loads(path.read_text()).get("entries", {}) if path.exists() else {}
    entries[name] = {**values, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path.write_text(json.dumps({"entries": dict(sorted(entries.items()))}, indent=2) + "\n")
