"""The table `bench/run` prints (one column per phase, one row per figure), its JSON, and two runs side by side."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .phases import LATENCY_PHASES, TRANSPORTS

COLUMNS = {"rest_single": "REST single", "rest_batch": "REST batch", "websocket": "WebSocket", "socketio": "Socket.IO",
           "mqtt": "MQTT", "mixed": "mixed 1k/s", "ws_ack": "WS 1k msg/s"}  # fmt: skip
PROCESSES = ("daphne", "nginx", "bridge", "worker", "watch", "mosquitto", "postgres", "redis")  # daphne: all web processes
DASH = "-"
VERDICT = {True: "PASS", False: "FAIL", None: "n/a"}


@dataclass(frozen=True)
class Target:
    text: str
    met: Callable[[dict, dict], bool | None]  # (phase figures, the run's limits) -> met, or None when not measured


def _ratio(value: float | None, limit: float | None) -> float | None:
    return value / limit if value is not None and limit else None


def limit_of(phase: str, limits: dict) -> tuple[str, float | None]:
    """The limit a phase's rate is compared with: (what, per second)."""
    if phase == "rest_single":
        return "bare view req/s", limits.get("bare_view", {}).get("requests_per_s")
    if phase == "rest_batch":
        return "executemany rows/s", limits.get("postgres", {}).get("executemany_per_s")
    if phase == "mqtt":
        return "bare paho msg/s", limits.get("bare_paho", {}).get("messages_per_s")
    if phase in ("websocket", "socketio"):
        return "bare echo acks/s", limits.get(f"echo_{phase}", {}).get("messages_per_s")
    return "", None


def rate_for_limit(phase: str, figures: dict) -> float | None:
    """REST single, WebSocket and Socket.IO compare answered messages/s with their bare ceiling's (a bare view, an
    echo endpoint); the others compare detections stored/s."""
    if phase in ("rest_single", "websocket", "socketio"):
        return figures.get("requests_per_s")
    return figures.get("stored_per_s")


def _copy(limits: dict) -> float | None:
    return limits.get("postgres", {}).get("copy_per_s")


def _limit_ratio(phase: str, figures: dict, limits: dict) -> float | None:
    return _ratio(rate_for_limit(phase, figures), limit_of(phase, limits)[1])


def _at_least_ratio(phase: str, share: float) -> Callable[[dict, dict], bool | None]:
    def met(figures: dict, limits: dict) -> bool | None:
        ratio = _limit_ratio(phase, figures, limits)
        return None if ratio is None else ratio >= share

    return met


def _p99_under(key: str, ms: float) -> Callable[[dict, dict], bool | None]:
    return lambda f, _: None if f[key]["p99"] is None else f[key]["p99"] < ms


TARGETS = {
    "rest_single": [Target(">= 0.6 bare", _at_least_ratio("rest_single", 0.6))],
    "rest_batch": [Target(">= 30k/s", lambda f, _: f["stored_per_s"] >= 30_000)],
    "websocket": [Target(">= 5k/s", lambda f, _: f["stored_per_s"] >= 5_000)],
    "socketio": [Target(">= 3k/s", lambda f, _: f["stored_per_s"] >= 3_000)],
    "mqtt": [Target(">= 10k/s", lambda f, _: f["stored_per_s"] >= 10_000),
             Target(">= 0.6 paho", _at_least_ratio("mqtt", 0.6))],
    "mixed": [Target("dash p99 < 50ms", _p99_under("dashboard_ms", 50.0))],
    "ws_ack": [Target("ack p99 < 10ms", _p99_under("ack_ms", 10.0))],
}  # fmt: skip


def verdicts(phase: str, figures: dict, limits: dict) -> list[bool | None]:
    return [t.met(figures, limits) for t in TARGETS[phase]]


def _num(value: Any, digits: int = 0) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def _cpu(f: dict, group: str) -> str:
    seconds = f.get("cpu_s", {}).get(group)
    if seconds is None or not f.get("seconds"):
        return DASH
    return f"{seconds:.1f} ({100 * seconds / f['seconds']:.0f}%)"


def _reconciled(f: dict) -> str:
    r = f["reconciliation"]
    bad = {k: r[k] for k in ("lost", "doubled", "unexpected") if r[k]}
    return "ok" if not bad else ", ".join(f"{k} {v:,}" for k, v in bad.items())


def _seen(f: dict) -> str:
    d = f["dashboard"]
    return (
        DASH
        if not d["stored"]
        else f"{100 * d['seen'] / d['stored']:.1f}%" + (f" ({d['repeated']} twice)" if d["repeated"] else "")
    )


def _server(f: dict, kind: str, p: str) -> float | None:
    return f.get("server", {}).get(kind, {}).get(p)


Row = tuple[str, Callable[[str, dict, dict], str], Callable[[str, dict, dict], float | None] | None]


def _rows() -> list[Row]:
    """(label, text of a cell, number for --compare or None) for each row of the table."""
    rows: list[Row] = [
        ("detections stored/s", lambda p, f, L: _num(f["stored_per_s"]), lambda p, f, L: f["stored_per_s"]),
        ("requests/s (REST single)", lambda p, f, L: _num(f.get("requests_per_s")) if p == "rest_single" else "",
         lambda p, f, L: f.get("requests_per_s") if p == "rest_single" else None),
        ("offered/s", lambda p, f, L: _num(f.get("offered_per_s")) if "offered_per_s" in f else "", None),
        ("target", lambda p, f, L: ", ".join(t.text for t in TARGETS[p]), None),
        ("verdict", lambda p, f, L: " ".join(VERDICT[v] for v in verdicts(p, f, L)), None),
        ("limit", lambda p, f, L: limit_of(p, L)[0], None),
        ("limit /s", lambda p, f, L: _num(limit_of(p, L)[1]) if limit_of(p, L)[0] else "",
         lambda p, f, L: limit_of(p, L)[1]),
        ("ratio to limit", lambda p, f, L: _num(_limit_ratio(p, f, L), 2) if limit_of(p, L)[0] else "", _limit_ratio),
        ("limit 2: COPY rows/s", lambda p, f, L: _num(_copy(L)) if p == "rest_batch" else "", None),
        ("ratio to COPY", lambda p, f, L: _num(_ratio(f["stored_per_s"], _copy(L)), 2) if p == "rest_batch" else "", None),
    ]  # fmt: skip
    for kind, label in (("ack_ms", "ack"), ("dashboard_ms", "dashboard")):
        for p in ("p50", "p95", "p99"):
            rows.append(
                (
                    f"{label} {p} ms",
                    lambda ph, f, L, k=kind, q=p: _num(f[k][q], 1),
                    lambda ph, f, L, k=kind, q=p: f[k][q],
                )
            )
    # latency phases: the web processes' own account (bench/server_metrics.py)
    for kind, label in (("queue_ms", "server queue"), ("write_ms", "server write"), ("lag_ms", "server loop lag")):
        for p in ("p50", "p99"):
            rows.append((f"{label} {p} ms", lambda ph, f, L, k=kind, q=p: _num(_server(f, k, q), 1) if "server" in f else "",
                         lambda ph, f, L, k=kind, q=p: _server(f, k, q)))  # fmt: skip
    for p in ("p50", "p99"):
        rows.append((f"client loop lag {p} ms", lambda ph, f, L, q=p: _num(f["client_lag_ms"][q], 1) if f.get("client_lag_ms") else "",
                     lambda ph, f, L, q=p: (f.get("client_lag_ms") or {}).get(q)))  # fmt: skip
    rows += [
        ("dashboard saw", lambda p, f, L: _seen(f), None),
        ("reconciled (DB)", lambda p, f, L: _reconciled(f), None),
        ("detections sent", lambda p, f, L: _num(f["reconciliation"]["sent"]), None),
        ("detections stored", lambda p, f, L: _num(f["reconciliation"]["stored"]), None),
        ("unanswered at the end", lambda p, f, L: _num(f["reconciliation"]["unanswered"]), None),
        ("measured window s", lambda p, f, L: _num(f["seconds"], 1), None),
    ]  # fmt: skip
    for group in PROCESSES:
        rows.append((f"CPU s {group}", lambda p, f, L, g=group: _cpu(f, g), lambda p, f, L, g=group: f["cpu_s"].get(g)))
    for group in PROCESSES:
        rows.append((f"peak RSS MB {group}", lambda p, f, L, g=group: _num(f["peak_rss_mb"].get(g)),
                     lambda p, f, L, g=group: f["peak_rss_mb"].get(g)))  # fmt: skip
    rows += [
        ("CPU s load generators", lambda p, f, L: _cpu(f, "client"), lambda p, f, L: f["cpu_s"].get("client")),
        ("CPU s other users", lambda p, f, L: _cpu({**f, "cpu_s": {"other": f["other_cpu_s"]}}, "other"),
         lambda p, f, L: f["other_cpu_s"]),
    ]  # fmt: skip
    return rows


ROWS = _rows()


def load_line(meta: dict) -> str:
    load = meta["load_average"]
    busy = load[0] > meta["cpus"] * 0.25
    return f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" + (
        "  WARNING: the machine is busy; figures are low and noisy" if busy else ""
    )


def header(meta: dict) -> list[str]:
    lines = [
        f"bench/run at {meta['started_at']} on {meta['cpus']} cores ({meta['cpu_model']}), {meta['memory_gb']:.1f} GB; "
        f"commit {meta['commit']}",
        load_line(meta),
        f"each phase: {meta['warmup_s']:g} s warm-up, {meta['measure_s']:g} s measured; "
        "CPU is seconds in the measured window (% of one core)",
    ]  # fmt: skip
    web = meta.get("web_processes", 1)
    if web > 1:
        lines.append(f"web: {web} Daphne processes behind nginx (daphne rows: all of them together)")
    bridges = meta.get("bridges", 1)
    if bridges > 1:
        lines.append(f"MQTT: {bridges} bridges on a shared subscription (bridge rows: all of them together)")
    return lines


def table(results: dict) -> str:
    phases = [p for p in (*TRANSPORTS, *LATENCY_PHASES) if p in results["phases"]]
    limits = results["limits"]
    cells = [[label] + [cell(p, results["phases"][p], limits) for p in phases] for label, cell, _ in ROWS]
    cells = [row for row in cells if any(c for c in row[1:])]
    head = [""] + [COLUMNS[p] for p in phases]
    widths = [max(len(r[i]) for r in [head, *cells]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([*header(results["meta"]), "", line(head), *(line(r) for r in cells), *notes(results)])


def notes(results: dict) -> list[str]:
    """What makes a figure of this run less trustworthy, said under the table."""
    out = []
    for phase in [p for p in (*TRANSPORTS, *LATENCY_PHASES) if p in results["phases"]]:
        f = results["phases"][phase]
        name, share = COLUMNS[phase], lambda seconds: seconds / f["seconds"] if f["seconds"] else 0.0  # noqa: E731
        if share(f["other_cpu_s"]) > 0.2:
            out.append(f"{name}: other users of the machine took {share(f['other_cpu_s']):.0%} of a core: figures low")
        if share(f.get("steal_s", 0.0)) > 0.1:
            out.append(f"{name}: the hypervisor withheld {share(f['steal_s']):.0%} of a core (steal): figures low")
        if share(f["cpu_s"].get("client", 0.0)) > 0.5:
            out.append(
                f"{name}: the load generators took {share(f['cpu_s']['client']):.0%} of a core: they may be the limit"
            )
        offered = f.get("offered_per_s")
        if phase == "mixed" and offered and f["stored_per_s"] < 0.95 * offered:
            out.append(
                f"{name}: stored {f['stored_per_s']:,.0f}/s of the {offered:,.0f}/s offered: the server fell behind"
            )
        r = f["reconciliation"]
        if r["lost"] or r["doubled"] or r["unexpected"] or r["ledger_mismatch"]:
            out.append(f"{name}: the database does not match what the cameras sent: {r}")
    return ["", *(f"note: {n}" for n in out)] if out else []


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=True))


def compare(a_path: Path, b_path: Path) -> str:
    a, b = (json.loads(Path(p).read_text()) for p in (a_path, b_path))
    if "phases" not in a or "phases" not in b:
        raise SystemExit("bench/run --compare: both files must come from bench/run without --big")
    out = [f"{name}: {path} ({run['meta']['started_at']}, commit {run['meta']['commit']}, "
           f"load {run['meta']['load_average'][0]:.2f})" for name, path, run in (("A", a_path, a), ("B", b_path, b))]
    out += ["", f"{'phase':<13} {'figure':<28} {'A':>12} {'B':>12} {'B/A':>7}"]
    for phase in (*TRANSPORTS, *LATENCY_PHASES):
        if phase not in a["phases"] and phase not in b["phases"]:
            continue
        for label, _, number in ROWS:
            if number is None:
                continue
            va = number(phase, a["phases"][phase], a["limits"]) if phase in a["phases"] else None
            vb = number(phase, b["phases"][phase], b["limits"]) if phase in b["phases"] else None
            if va is None and vb is None:
                continue
            change = f"{vb / va:.2f}" if va and vb is not None else DASH
            digits = 2 if max(abs(v) for v in (va, vb) if v is not None) < 10 else 1
            out.append(f"{COLUMNS[phase]:<13} {label:<28} {_num(va, digits):>12} {_num(vb, digits):>12} {change:>7}")
    return "\n".join(out)
