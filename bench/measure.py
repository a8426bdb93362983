"""From the load generators' logs, the dashboard's log and the database to a phase's figures.

Every figure is checked against the database: detections stored per second
are rows counted by `received_at` in the measured window; each message the
cameras sent is looked up (none lost: every acked read stored; none doubled:
one row per message_id; nothing stored that no camera sent).
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

import psycopg


@dataclass
class Sent:
    """What the cameras sent: per message, its kind (d detection, h health), send and ack time (µs) and status."""

    kind: dict[str, str] = field(default_factory=dict)
    send_us: dict[str, int] = field(default_factory=dict)
    ack_us: dict[str, int] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    answered_us: list[int] = field(default_factory=list)  # when each answer came, paired with its message or not

    def merge(self, other: "Sent") -> "Sent":
        for mine, theirs in zip((self.kind, self.send_us, self.ack_us, self.status),
                                (other.kind, other.send_us, other.ack_us, other.status)):  # fmt: skip
            mine.update(theirs)
        self.answered_us += other.answered_us
        return self

    def detections_sent_between(self, start_us: float, end_us: float) -> list[str]:
        return [m for m, k in self.kind.items() if k == "d" and start_us <= self.send_us[m] < end_us]


def read_node_log(path: Path) -> Sent:
    """camera.js: "message_id kind send_us ack_us status" per message."""
    sent = Sent()
    for line in path.read_text().splitlines():
        message_id, kind, send_us, ack_us, status = line.split(" ")
        sent.kind[message_id], sent.send_us[message_id] = kind, int(send_us)
        if ack_us != "0":
            sent.ack_us[message_id], sent.status[message_id] = int(ack_us), status
    sent.answered_us = list(sent.ack_us.values())
    return sent


def read_wrk_logs(prefix: Path) -> Sent:
    """rest_single.lua: "s message_id kind send_us" per request, "a message_id ack_us status" per answer."""
    sent = Sent()
    for name in glob.glob(f"{prefix}.*"):
        for line in Path(name).read_text().splitlines():
            parts = line.split(" ")
            if parts[0] == "s" and len(parts) == 4:
                sent.kind[parts[1]], sent.send_us[parts[1]] = parts[2], int(parts[3])
            elif parts[0] == "a" and len(parts) == 4:
                sent.answered_us.append(int(parts[2]))
                if parts[1] in sent.kind:  # the bare view's answers name no message
                    sent.ack_us[parts[1]], sent.status[parts[1]] = int(parts[2]), parts[3]
    return sent


def answers_between(sent: Sent, start_us: float, end_us: float) -> int:
    return sum(1 for at in sent.answered_us if start_us <= at < end_us)


def percentiles(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    pick = lambda p: ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else None  # noqa: E731
    return {"p50": pick(50), "p95": pick(95), "p99": pick(99), "n": len(ordered)}


@dataclass
class Stored:
    """Detection rows of some cameras: how many times each message_id is stored, and how many in the window."""

    count: dict[str, int]
    in_window: int
    ledger: int


def stored_detections(database_url: str, device_ids: list[str], start_us: float, end_us: float) -> Stored:
    with psycopg.connect(database_url) as conn:
        count = {str(m): n for m, n in conn.execute(
            "SELECT message_id, count(*) FROM detections_detection WHERE device_id = ANY(%s) GROUP BY message_id",
            [device_ids])}  # fmt: skip
        in_window = conn.execute(
            "SELECT count(*) FROM detections_detection WHERE device_id = ANY(%s)"
            " AND received_at >= to_timestamp(%s) AND received_at < to_timestamp(%s)",
            [device_ids, start_us / 1e6, end_us / 1e6],
        ).fetchone()[0]
        ledger = conn.execute(
            "SELECT count(*) FROM transport_message WHERE device_id = ANY(%s) AND data_type = 'detection'", [device_ids]
        ).fetchone()[0]
    return Stored(count, in_window, ledger)


def reconcile(sent: Sent, stored: Stored) -> dict[str, int]:
    """Counts that must hold: every acked-accepted read stored once, nothing stored that was not sent."""
    detections = {m for m, k in sent.kind.items() if k == "d"}
    accepted = {m for m in detections if sent.status.get(m) == "accepted"}
    return {
        "sent": len(detections),
        "accepted": len(accepted),
        "unanswered": sum(1 for m in detections if m not in sent.status),
        "refused": sum(1 for m in detections if m in sent.status and sent.status[m] not in ("accepted", "duplicate")),
        "stored": sum(stored.count.values()),
        "lost": sum(1 for m in accepted if m not in stored.count),
        "doubled": sum(n - 1 for n in stored.count.values() if n > 1),
        "unexpected": sum(1 for m in stored.count if m not in detections),
        "ledger_mismatch": stored.ledger - len(stored.count),
    }


def read_dashboard(path: Path, offset: int = 0) -> tuple[dict[str, int], set[str], int]:
    """From dashboard.js's log: message_id -> first arrival (µs), ids that came more than once, offset read up to."""
    arrivals: dict[str, int] = {}
    repeated: set[str] = set()
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read()
    end = offset + data.rfind(b"\n") + 1
    for line in data[: end - offset].decode().splitlines():
        message_id, at = line.rsplit(" ", 1)
        if message_id.startswith("alert "):
            continue
        if message_id in arrivals:
            repeated.add(message_id)
        else:
            arrivals[message_id] = int(at)
    return arrivals, repeated, end


def latencies(sent: Sent, arrivals: dict[str, int], start_us: float, end_us: float) -> dict:
    """Ack and dashboard latency (ms) of the detections sent in the window and accepted."""
    window = [m for m in sent.detections_sent_between(start_us, end_us) if sent.status.get(m) == "accepted"]
    ack = [(sent.ack_us[m] - sent.send_us[m]) / 1000 for m in window]
    dash = [(arrivals[m] - sent.send_us[m]) / 1000 for m in window if m in arrivals]
    return {"ack_ms": percentiles(ack), "dashboard_ms": percentiles(dash)}


def dashboard_coverage(stored: Stored, arrivals: dict[str, int], repeated: set[str]) -> dict[str, int]:
    """How many of the stored detections of these cameras the dashboard showed, and how many more than once."""
    return {"stored": len(stored.count), "seen": sum(1 for m in stored.count if m in arrivals),
            "repeated": sum(1 for m in stored.count if m in repeated)}  # fmt: skip
