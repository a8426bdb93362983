"""The phases of `bench/run`: each offers one load to the running stack and returns its figures.

Throughput phases (one per transport) saturate the server from 20 cameras
(WebSocket and Socket.IO: 50 connections) and report what it stored per second; the latency phases offer a fixed rate,
open loop: all five transports together at 1,000 detections/s ("mixed"), and
WebSocket alone at 1,000 messages/s ("ws_ack", issue 3's ack target).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from . import measure, server_metrics
from .fleet import Camera
from .generators import HEALTH_EVERY, NodeCameras, Result, WrkCameras
from .sampler import Sampler
from .stack import Stack, say

TRANSPORTS = ("rest_single", "rest_batch", "websocket", "socketio", "mqtt")
LATENCY_PHASES = ("mixed", "ws_ack")
INGEST_PATH = "/api/v1/ingest/"
BARE_PATH = "/bench/bare/"
# How each transport is saturated: unacked messages per camera (REST batch: POSTs of 1,000 in flight; REST single:
# wrk connections), about 1,300 in flight on the socket transports. Enough to keep the server busy; the ack latency
# of a saturated server is the window's wait.
SATURATION = {"rest_single": {"connections": 16}, "rest_batch": {"window": 4, "batch": 1000},
              "websocket": {"window": 26}, "socketio": {"window": 26}, "mqtt": {"window": 100}}  # fmt: skip
MIXED_RATE = 1000.0  # detections/s offered in all by the mixed phase, a fifth on each transport
WS_ACK_RATE = 1000.0


@dataclass
class Run:
    """What every phase needs: the stack, the sampler, a work directory, the dashboard's log, the cameras."""

    stack: Stack
    sampler: Sampler
    work: Path
    dashboard_log: Path
    cameras: dict[str, list[Camera]]  # per phase (mixed: per transport, as "mixed.<transport>")
    warmup_s: float
    measure_s: float


def generator(run: Run, name: str, transport: str, cameras: list[Camera], mode: str, measure_s: float,
              rate: float | None = None, start_at: float | None = None):  # fmt: skip
    """Start the load generator of `transport` (wrk for REST single, Node for the others), sending from `start_at`."""
    timing = {"warmup_s": run.warmup_s, "measure_s": measure_s}
    if transport == "rest_single":
        # at a fixed rate, enough connections that a slow answer does not hold the next request back
        options = {"rate": rate, "connections": 64 if rate else SATURATION["rest_single"]["connections"]}
        time.sleep(max(0.0, (start_at or 0) - time.time()))
        gen = WrkCameras(run.work, name, cameras, run.stack.base, INGEST_PATH, **timing, **options)
    else:
        options = {"rate": rate, "batch_interval_s": 1.0} if rate else SATURATION[transport]
        options |= {"start_at_us": start_at * 1e6} if start_at else {}
        gen = NodeCameras(run.work, name, transport, cameras, run.stack.base, run.stack.mqtt_port, mode=mode,
                          **timing, **options)  # fmt: skip
    run.sampler.add_client(gen.proc.pid)
    return gen


def throughput(run: Run, transport: str) -> dict:
    say(f"{transport}: saturating from {len(run.cameras[transport])} cameras, "
        f"{run.warmup_s:g} s warm-up + {run.measure_s:g} s measured")  # fmt: skip
    mark = Mark.now(run)
    result = generator(run, transport, transport, run.cameras[transport], "saturate", run.measure_s).result()
    figures, _ = settle(run, mark, [(run.cameras[transport], result)], result.window_us)
    figures["requests_per_s"] = measure.answers_between(result.sent, *result.window_us) / run.measure_s
    return figures


def fixed_rate(run: Run, phase: str, measure_s: float | None = None) -> dict:
    """`mixed`: 1,000 detections/s over all five transports; `ws_ack`: 1,000 messages/s over WebSocket."""
    measure_s = measure_s or run.measure_s
    # messages/s per transport: the mixed phase's 1,000 detections/s come with their share of health reports
    messages = MIXED_RATE * HEALTH_EVERY / (HEALTH_EVERY - 1)
    plan = {t: messages / len(TRANSPORTS) for t in TRANSPORTS} if phase == "mixed" else {"websocket": WS_ACK_RATE}
    say(f"{phase}: {sum(plan.values()):,.0f} messages/s open loop over {', '.join(plan)} "
        f"({run.warmup_s:g} s warm-up + {measure_s:g} s measured)")  # fmt: skip
    mark = Mark.now(run)
    cameras = {t: run.cameras[f"{phase}.{t}"] for t in plan}
    start_at = time.time() + 3  # every generator connected by then (wrk, which needs no time, starts last)
    order = sorted(plan, key=lambda t: t == "rest_single")
    inside = server_metrics.Window(run.stack.web_urls, start_at + run.warmup_s)
    gens = {t: generator(run, f"{phase}.{t}", t, cameras[t], "rate", measure_s, plan[t], start_at) for t in order}
    results = {t: g.result() for t, g in gens.items()}
    server = inside.close()
    window = (max(r.window_us[0] for r in results.values()), min(r.window_us[1] for r in results.values()))
    figures, arrivals = settle(run, mark, [(cameras[t], r) for t, r in results.items()], window)
    figures["offered_per_s"] = MIXED_RATE if phase == "mixed" else WS_ACK_RATE
    figures["by_transport"] = {t: measure.latencies(r.sent, arrivals, *window) for t, r in results.items()}
    figures["server"] = server
    figures["client_lag_ms"] = client_lag(results.values())
    return figures


def client_lag(results) -> dict | None:
    """The worst event-loop lag among the Node load generators (p50 and p99, ms): time an ack waited in a client."""
    lags = [r.summary["loop_lag_ms"] for r in results if r.summary.get("loop_lag_ms")]
    return {q: max(lag[q] for lag in lags) for q in ("p50", "p99")} if lags else None


@dataclass(frozen=True)
class Mark:
    """Where a phase began: in time, and in the dashboard's log."""

    at: float
    dashboard_offset: int

    @classmethod
    def now(cls, run: Run) -> "Mark":
        return cls(time.time(), run.dashboard_log.stat().st_size)


def settle(run: Run, mark: Mark, parts: list[tuple[list[Camera], Result]],
           window_us: tuple[float, float]) -> tuple[dict, dict[str, int]]:  # fmt: skip
    """Wait for the dashboard to catch up, then reconcile with the database and gather the phase's figures."""
    run.stack.check()
    sent = measure.Sent()
    for _, result in parts:
        sent.merge(result.sent)
    device_ids = [c.id for cameras, _ in parts for c in cameras]
    stored = measure.stored_detections(run.stack.database_url, device_ids, *window_us)
    arrivals, repeated = wait_for_dashboard(run, mark, stored)
    stored = measure.stored_detections(run.stack.database_url, device_ids, *window_us)  # late arrivals included
    measure_s = (window_us[1] - window_us[0]) / 1e6
    figures = {
        "stored_per_s": stored.in_window / measure_s,
        "window_us": list(window_us),
        "reconciliation": measure.reconcile(sent, stored),
        **measure.latencies(sent, arrivals, *window_us),
        "dashboard": measure.dashboard_coverage(stored, arrivals, repeated),
        **run.sampler.window(window_us[0] / 1e6, window_us[1] / 1e6),
        "elapsed_s": time.time() - mark.at,
    }
    check = figures["reconciliation"]
    if check["lost"] or check["doubled"] or check["unexpected"]:
        say(f"  RECONCILIATION FAILED: {check}")
    say(f"  stored {figures['stored_per_s']:,.0f} detections/s; ack p99 {fmt_ms(figures['ack_ms']['p99'])}, "
        f"dashboard p99 {fmt_ms(figures['dashboard_ms']['p99'])}; {check['stored']:,} stored, "
        f"{check['lost']} lost, {check['doubled']} doubled")  # fmt: skip
    return figures, arrivals


def wait_for_dashboard(run: Run, mark: Mark, stored: measure.Stored, timeout: float = 20.0) -> tuple[dict, set]:
    """The dashboard's arrivals once it shows every stored detection, or has shown nothing new for 2 s."""
    deadline, quiet_since, last = time.monotonic() + timeout, time.monotonic(), -1
    while True:
        arrivals, repeated, _ = measure.read_dashboard(run.dashboard_log, mark.dashboard_offset)
        seen = sum(1 for m in stored.count if m in arrivals)
        if seen >= len(stored.count) or time.monotonic() > deadline or time.monotonic() - quiet_since > 2:
            return arrivals, repeated
        if seen != last:
            last, quiet_since = seen, time.monotonic()
        time.sleep(0.2)


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
