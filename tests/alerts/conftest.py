"""Alert test helpers: a real Celery worker on the test database and Redis, a webhook receiver, watchlists.

The worker is a `celery -A lpr_server worker` subprocess for the whole
session; tests that use it are `django_db(transaction=True)` because it only
sees committed rows. The webhook receiver is http.server in a thread on
127.0.0.1, scripted per request ("ok", "500" or "hang").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.realtime.conftest import free_port, server_database_url, wait_until

REPO = Path(__file__).resolve().parents[2]
WORKER_ENV = {"ALERT_WEBHOOK_TIMEOUT_S": "1", "ALERT_WEBHOOK_BACKOFF_S": "0.5", "ALERT_WEBHOOK_MAX_ATTEMPTS": "3",
              "ALERT_WEBHOOK_DISABLE_AFTER": "2", "ADMINS": "ops@example.org", "ALERT_INDEX_CHECK_S": "0"}  # fmt: skip


@dataclass
class Worker:
    proc: subprocess.Popen
    log_path: Path
    mailbox: Path | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pool_children(self) -> list[int]:
        """The pool's processes (prefork pool)."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def kill(self) -> None:
        """SIGKILL the whole worker, main process and pool alike (a lost machine, an OOM kill of the group)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def start_worker(log_dir: Path, pool: str = "threads", concurrency: int = 4, **env_overrides: str) -> Worker:
    from django.conf import settings

    env = {**os.environ, "DATABASE_URL": server_database_url(), "REDIS_URL": settings.REDIS_URL, "LOG_LEVEL": "INFO",
           "PYTHONUNBUFFERED": "1", **WORKER_ENV, **env_overrides}  # fmt: skip
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log_path = log_dir / f"worker-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "celery", "-A", "lpr_server", "worker", "--concurrency", str(concurrency), "--pool", pool,
           "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    worker = Worker(proc, log_path)

    def ready():
        if proc.poll() is not None:
            raise AssertionError("worker exited:\n" + worker.log())
        return "ready." in worker.log()

    wait_until(ready, 60, what="the Celery worker")
    return worker


@pytest.fixture(autouse=True)
def _fresh_watchlist_index(settings):
    """Each test sees its own watchlists at once, not an index cached from the previous test."""
    from detections import watchlists

    settings.ALERT_INDEX_CHECK_S = 0
    watchlists.forget_index()


@pytest.fixture(scope="session")
def redis_db(django_db_setup):
    """This run's own Redis database, emptied once: no task or group left from an earlier run."""
    import redis
    from django.conf import settings

    assert settings.REDIS_URL, "these tests need REDIS_URL (scripts/test sets it from TEST_REDIS_URL)"
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    # Servers, bridges and workers started by these tests see a watchlist the moment a test creates it.
    os.environ["ALERT_INDEX_CHECK_S"] = "0"
    return settings.REDIS_URL


@pytest.fixture(scope="session")
def worker(redis_db, tmp_path_factory):
    """The session's worker; its e-mail backend writes files into `worker.mailbox`."""
    log_dir = tmp_path_factory.mktemp("worker")
    w = start_worker(log_dir, EMAIL_URL=f"filemail:///{log_dir / 'mail'}")
    w.mailbox = log_dir / "mail"
    yield w
    w.stop()


# --- the webhook receiver -------------------------------------------------------------------------


@dataclass
class Received:
    at: float
    headers: dict
    body: bytes

    @property
    def alert(self) -> dict:
        return json.loads(self.body)["alert"]

    def signed_with(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("X-LPR-Signature", ""), expected)


@dataclass
class Receiver:
    """Answers each POST by the next step of `script` (then `default`): "ok" (204), "500", or "hang" (no answer for 3 s)."""

    port: int = 0
    script: list[str] = field(default_factory=list)
    default: str = "ok"
    attempts: list[tuple[float, str]] = field(default_factory=list)  # (time, what it answered)
    received: list[Received] = field(default_factory=list)  # answered 2xx
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def next_step(self) -> str:
        with self.lock:
            return self.script.pop(0) if self.script else self.default


def _serve(state: Receiver) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            step = state.next_step()
            state.attempts.append((time.monotonic(), step))
            if step == "hang":
                time.sleep(3)
                return
            if step == "500":
                self.send_response(500)
                self.end_headers()
                return
            state.received.append(Received(time.monotonic(), dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads, server.block_on_close = True, False
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def receivers():
    """Start webhook receivers: `receivers(default="hang")`; each is stopped after the test."""
    servers = []

    def start(**fields) -> Receiver:
        state = Receiver(**fields)
        servers.append(_serve(state))
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver(receivers):
    return receivers()


# --- data ------------------------------------------------------------------------------------------


def make_watchlist(entries: list[dict], name: str | None = None, **fields):
    from detections.alert_models import Watchlist, WatchlistEntry
    from detections.watchlists import check_entry

    watchlist = Watchlist.objects.create(name=name or f"list-{time.monotonic_ns()}", **fields)
    WatchlistEntry.objects.bulk_create([check_entry(WatchlistEntry(watchlist=watchlist, **e)) for e in entries])
    return watchlist


def make_webhook(url: str, secret: str = "s3cret", **fields):
    from detections.alert_models import Webhook

    return Webhook.objects.create(name=f"hook-{time.monotonic_ns()}", url=url, secret=secret, **fields)


def detection(device_id: str, plate: str, candidates: tuple[str, ...] = (), **fields) -> dict:
    from tests.factories import envelope

    payload = {"plate": plate, "confidence": 0.9, "candidates": [{"plate": c, "confidence": 0.5} for c in candidates]}
    return envelope(device_id, payload=payload, **fields)


__all__ = ["free_port", "wait_until", "make_watchlist", "make_webhook", "detection", "start_worker"]
