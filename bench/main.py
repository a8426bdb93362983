"""bench/run: the real stack under load, one table of what it does beside what its parts alone allow.

    bench/run                          every phase and limit (about 3 minutes)
    bench/run --only rest_batch,mqtt   some phases (with their limits): rest_single rest_batch websocket
                                       socketio mqtt mixed ws_ack
    bench/run --soak 600               1,000 detections/s of mixed transports for 600 s; memory of every process
    bench/run --big                    10,000,000 detections: dashboard pages and plate search, server time
    bench/run --compare A.json B.json  two runs side by side

Progress goes to stderr, the table to stdout; the results also go to
bench/results/<time>.json (and --json PATH). docs/performance.md explains
every column and the load.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import psutil
import redis

from . import big, fleet, limits, phases, report, soak
from .phases import LATENCY_PHASES, TRANSPORTS, Run
from .sampler import Sampler
from .stack import ROOT, Stack, fresh_database, say, wait_for

DATABASE = "lpr_bench_run"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
RESULTS = ROOT / "bench" / "results"
CAMERAS = 20  # per throughput phase; the mixed phase has 4 per transport
SOCKET_CAMERAS = 50  # WebSocket, Socket.IO and the WS 1k phase: issue 3 measures over 50 connections
BARE_PAHO_MESSAGES = 60_000
CAMERA_PREFIX = {"rest_single": "RS", "rest_batch": "RB", "websocket": "WS", "socketio": "SIO", "mqtt": "MQ"}


def main(argv: list[str] | None = None) -> None:
    # Stopped with SIGTERM (kill, timeout), it still stops the stack it started instead of leaving it running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse(argv)
    if args.compare:
        print(report.compare(*args.compare))
        return
    if args.big:
        results = big.run(args.rows, meta(args))
        save(results, args.json)
        return
    selected = ["mixed"] if args.soak else args.only.split(",")
    unknown = set(selected) - set(TRANSPORTS) - set(LATENCY_PHASES)
    if unknown:
        raise SystemExit(
            f"bench: unknown phase(s) {', '.join(sorted(unknown))}; "
            f"choose from {', '.join(TRANSPORTS + LATENCY_PHASES)}"
        )
    results = {"meta": meta(args), "phases": {}, "limits": {}}
    with running_stack(selected, args, sample_every=10.0 if args.soak else 0.5) as run:
        if args.soak:
            results["phases"]["mixed"] = phases.fixed_rate(run, "mixed", measure_s=args.soak)
            results["soak"] = soak.memory(run.sampler, results["phases"]["mixed"])
        else:
            run_phases(run, selected, results)
    print(report.table(results))
    if args.soak:
        print()
        print(soak.table(results["soak"]))
    save(results, args.json)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(TRANSPORTS + LATENCY_PHASES), help="comma-separated phases")
    parser.add_argument("--warmup", type=float, help="seconds of load before measuring (default 3; 60 with --soak)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase (default 10)")
    parser.add_argument(
        "--soak", type=float, metavar="SECONDS", help="the soak: mixed load for SECONDS, memory sampled every 10 s"
    )
    parser.add_argument(
        "--big", action="store_true", help="seed 10,000,000 detections; time dashboard pages and search"
    )
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows seeded by --big")
    parser.add_argument(
        "--web", type=int, default=1, metavar="N",
        help="Daphne processes, behind nginx when more than one, as docs/deployment.md deploys them (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--bridges", type=int, default=1, metavar="N",
        help="MQTT bridges, on a shared subscription when more than one, as docs/deployment.md runs them (default 1)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--compare", nargs=2, type=Path, metavar=("A", "B"), help="print two results files side by side"
    )
    args = parser.parse_args(argv)
    if args.web < 1:
        parser.error("--web: at least one web process")
    if args.bridges < 1:
        parser.error("--bridges: at least one MQTT bridge")
    if args.warmup is None:
        args.warmup = 60.0 if args.soak else 3.0  # the soak's first memory sample comes once caches have filled
    return args


def meta(args: argparse.Namespace) -> dict:
    load = os.getloadavg()
    cpus = os.cpu_count() or 1
    if load[0] > cpus * 0.25:
        say(f"WARNING: load average {load[0]:.2f} on {cpus} cores before starting: other work is running, "
            "so the figures will be low and noisy")  # fmt: skip
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    return {"started_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), "load_average": list(load),
            "cpus": cpus, "cpu_model": model, "memory_gb": psutil.virtual_memory().total / 2**30,
            "commit": commit + ("-dirty" if dirty else ""), "warmup_s": args.warmup, "web_processes": args.web,
            "bridges": args.bridges,
            "measure_s": args.soak or args.seconds,
            "argv": sys.argv[1:]}  # fmt: skip


def cameras_for(selected: list[str]) -> dict[str, tuple[str, int]]:
    """Camera groups to create: name -> (device id prefix, count)."""
    groups = {t: (f"T{CAMERA_PREFIX[t]}", SOCKET_CAMERAS if t in ("websocket", "socketio") else CAMERAS)
              for t in TRANSPORTS if t in selected}  # fmt: skip
    if "mixed" in selected:
        groups.update({f"mixed.{t}": (f"M{CAMERA_PREFIX[t]}", 4) for t in TRANSPORTS})
    if "ws_ack" in selected:
        groups["ws_ack.websocket"] = ("AWS", SOCKET_CAMERAS)
    groups["probe"] = ("PROBE", 1)
    return groups


@contextmanager
def running_stack(selected: list[str], args: argparse.Namespace, sample_every: float) -> Iterator[Run]:
    """Fresh database and Redis db, cameras, the stack, the sampler and a logged-in dashboard; all stopped after."""
    work = Path(tempfile.mkdtemp(prefix="lpr-bench-"))
    say(f"logs and load files in {work}")
    redis.Redis.from_url(REDIS_URL).flushdb()
    url = fresh_database(DATABASE)
    fleet.setup_django(url)
    cameras = {name: fleet.create_cameras(prefix, n) for name, (prefix, n) in cameras_for(selected).items()}
    fleet.create_watchlist()
    cookie = fleet.operator_cookie()
    say(f"{sum(len(c) for c in cameras.values())} cameras, a watchlist of {len(fleet.WATCHLIST_PLATES):,} plates")
    stack = Stack(url, REDIS_URL, work, web=args.web, bridges=args.bridges)
    try:
        stack.start()
        sampler = Sampler(url, DATABASE, interval=sample_every)
        sampler.roles.update(stack.roles())
        sampler.start()
        dashboard_log = work / "dashboard.log"
        dashboard_log.touch()
        dashboard = subprocess.Popen(
            ["node", str(ROOT / "bench/load/dashboard.js"), stack.base, cookie, str(dashboard_log)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        sampler.add_client(dashboard.pid)
        try:
            if dashboard.stdout.readline().strip() != "open":
                raise SystemExit("bench: the dashboard socket did not open (see the error above)")
            probe(stack.base, cameras.pop("probe")[0], dashboard_log)
            yield Run(stack, sampler, work, dashboard_log, cameras, args.warmup, args.seconds)
        finally:
            dashboard.terminate()
            dashboard.wait(10)
            sampler.stop()
    finally:
        stack.stop()


def probe(base: str, camera: fleet.Camera, dashboard_log: Path) -> None:
    """One detection over REST must reach the dashboard before any load: the whole chain is up."""
    import uuid

    import requests

    message_id = str(uuid.uuid4())
    envelope = {"message_id": message_id, "timestamp": datetime.now(timezone.utc).isoformat(), "protocol": "rest",
                "edge_device_id": camera.id, "data_type": "detection",
                "payload": {"plate": "PR0BE1", "confidence": 0.9}}  # fmt: skip
    response = requests.post(base + "/api/v1/ingest/", json=envelope, headers={"Authorization": f"Device {camera.key}"})
    response.raise_for_status()
    wait_for(lambda: message_id in dashboard_log.read_text(), 20, "a probe detection to reach the dashboard socket")


def run_phases(run: Run, selected: list[str], results: dict) -> None:
    for phase in (*TRANSPORTS, *LATENCY_PHASES):
        if phase not in selected:
            continue
        if phase in TRANSPORTS:
            results["phases"][phase] = phases.throughput(run, phase)
        else:
            results["phases"][phase] = phases.fixed_rate(run, phase)
        if phase == "rest_single":
            results["limits"]["bare_view"] = limits.bare_view(run)
        elif phase == "rest_batch":
            stored = results["phases"][phase]["reconciliation"]["stored"]
            results["limits"]["postgres"] = limits.postgres(
                run.stack.database_url, [c.id for c in run.cameras[phase]], stored
            )
        elif phase in ("websocket", "socketio"):
            results["limits"][f"echo_{phase}"] = limits.bare_echo(run, phase)
        elif phase == "mqtt":
            results["limits"]["bare_paho"] = limits.bare_paho(run.stack.mqtt_port, [c.id for c in run.cameras[phase]],
                                                              BARE_PAHO_MESSAGES)  # fmt: skip


def save(results: dict, extra: Path | None) -> None:
    path = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    report.write_json(results, path)
    if extra:
        report.write_json(results, extra)
    say(f"results written to {path}" + (f" and {extra}" if extra else ""))


if __name__ == "__main__":
    main()
