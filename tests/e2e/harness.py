"""End-to-end harness: fault proxies and simulator processes the test steers, and the cameras' own logs.

The server side (Daphne via `manage.py serve`, the MQTT bridge, a private
Mosquitto) comes from the real-time and MQTT test helpers; this module adds
the camera side: `python -m edge.faultproxy` and `python -m edge.simulate`
subprocesses, and readers for the simulator's per-camera JSON-lines logs and
SQLite outboxes.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class FaultProxy:
    """`python -m edge.faultproxy` in front of HOST:PORT, steered over its HTTP control port."""

    def __init__(self, target_port: int, log_dir: Path, name: str):
        self._log = open(log_dir / f"proxy-{name}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.faultproxy", "--target", f"127.0.0.1:{target_port}"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self._log, text=True,
        )  # fmt: skip
        ports = json.loads(self.proc.stdout.readline())
        self.port, self.control = ports["listen"], ports["control"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def act(self, action: str, **query: str) -> dict:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        request = urllib.request.Request(f"http://127.0.0.1:{self.control}/{action}?{qs}", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read() or b"{}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._log.close()


@dataclass
class Simulator:
    """One `python -m edge.simulate` process for a group of cameras; restartable from its state directory."""

    args: list[str]
    state_dir: Path
    proc: subprocess.Popen | None = None
    runs: list[Path] = field(default_factory=list)

    def start(self) -> "Simulator":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        out = self.state_dir / f"run-{len(self.runs)}.out"
        self.runs.append(out)
        with open(out, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.simulate", "--state-dir", str(self.state_dir), *self.args],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM: the simulator drains its outboxes (up to --drain) and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.runs)


@dataclass
class CameraLog:
    produced: list[str] = field(default_factory=list)
    sequences: dict[str, int] = field(default_factory=dict)  # message_id -> sequence
    acks: list[dict] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)
    switches: list[dict] = field(default_factory=list)

    @property
    def level(self) -> str:
        """The level the camera is on now: its last switch (every camera starts on websocket)."""
        return self.switches[-1]["to"] if self.switches else "websocket"

    def switched_to(self, level: str, since_iso: str) -> bool:
        return any(s["to"] == level and s["at"] >= since_iso for s in self.switches)

    def reached(self, level: str, since_iso: str) -> bool:
        """On `level` now, or moved there since `since_iso` (it may have tried a level up since)."""
        return self.level == level or self.switched_to(level, since_iso)


def read_logs(state_dirs: list[Path]) -> dict[str, CameraLog]:
    """Every camera's `<device_id>.messages.jsonl`; a line cut short by a kill is skipped."""
    logs: dict[str, CameraLog] = defaultdict(CameraLog)
    for directory in state_dirs:
        for path in directory.glob("*.messages.jsonl"):
            cam = logs[path.name.removesuffix(".messages.jsonl")]
            for line in path.read_text().splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                kind = event.get("event")
                if kind == "produced":
                    cam.produced.append(event["message_id"])
                    cam.sequences[event["message_id"]] = event["sequence"]
                elif kind == "ack":
                    cam.acks.append(event)
                elif kind == "dropped":
                    cam.dropped.add(event["message_id"])
                elif kind == "switch":
                    cam.switches.append(event)
    return dict(logs)


def outbox_ids(path: Path) -> set[str]:
    """message_ids waiting in a camera's outbox (read-only; the camera may be running or dead)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return {row[0] for row in db.execute("SELECT message_id FROM outbox")}
    finally:
        db.close()
