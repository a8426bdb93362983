"""Helpers for tests that start real processes (servers, bridges, workers) beside pytest.

No Django import at module level: tests/edge uses this module too.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
