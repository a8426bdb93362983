"""Ingest-to-webhook delivery time of watchlist alerts at 500 detections/s with a 10,000-entry watchlist.

    .venv/bin/python bench/alerts.py [--rate 500] [--seconds 20] [--hit-every 50] [--entries 10000]

Starts Daphne (REST ingest) and a Celery worker on a fresh PostgreSQL
database (`lpr_alerts_bench`) and Redis DB 7, a webhook receiver in this
process, and a watchlist of N entries (half exact, half lenient). Cameras post
batches of detections every 200 ms at the given total rate; one detection in
`--hit-every` is a listed plate (each a new passage). The time of an alert is
from the start of the POST that carried its detection to the webhook request
arriving here. Target: p99 < 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import PYTHON, ROOT, create_device, daphne, free_port, fresh_database, say, server_env  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
TARGET_P99_S = 1.0
TICK_S = 0.2
CAMERAS = 2
ALPHABET = string.ascii_uppercase + string.digits
POSTS: list[float] = []  # seconds each ingest POST took (its ack), for reading the figures


class Receiver:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}  # plate -> monotonic arrival
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                state.arrived.setdefault(body["alert"]["plate"], time.monotonic())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def setup_watchlist(database_url: str, entries: int, hook_url: str) -> list[str]:
    """Create the watchlist and webhook through the ORM; return the listed plates."""
    os.environ.update(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="lpr_server.settings")
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from detections.alert_models import Watchlist, WatchlistEntry, Webhook

    rng = random.Random(5)
    # random plates: far enough apart that two hits on one camera never fall into one passage
    plates = list(dict.fromkeys("HL" + "".join(rng.choice(ALPHABET) for _ in range(5)) for _ in range(entries * 2)))[:entries]
    watchlist = Watchlist.objects.create(name="bench")
    WatchlistEntry.objects.bulk_create(
        [WatchlistEntry(watchlist=watchlist, value=p, match="lenient" if n % 2 else "exact") for n, p in enumerate(plates)],
        batch_size=5000,
    )
    Webhook.objects.create(name="bench", url=hook_url, secret="bench-secret")
    return plates


def start_worker(database_url: str) -> subprocess.Popen:
    env = server_env(database_url, REDIS_URL=REDIS_URL)
    proc = subprocess.Popen([PYTHON, "-m", "celery", "-A", "lpr_server", "worker", "--pool", "threads", "--concurrency",
                             "8", "--loglevel", "WARNING", "--without-gossip", "--without-mingle"], cwd=ROOT, env=env)  # fmt: skip
    time.sleep(4)
    return proc


def camera_loop(base: str, device: dict, rate_per_camera: float, seconds: float, hits: list[str], hit_every: int,
                sent: dict[str, float], counter: list[int]) -> None:  # fmt: skip
    session = requests.Session()
    headers = {"Authorization": f"Device {device['key']}", "Content-Type": "application/json"}
    per_tick = max(1, round(rate_per_camera * TICK_S))
    start = time.monotonic()
    tick = 0
    while (now := time.monotonic()) - start < seconds:
        messages, plates = [], []
        stamp = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        for _ in range(per_tick):
            n = counter[0] = counter[0] + 1
            plate = hits.pop() if n % hit_every == 0 and hits else f"ZZ{uuid.uuid4().hex[:5].upper()}"
            if plate.startswith("HL"):
                plates.append(plate)
            messages.append({"message_id": str(uuid.uuid4()), "timestamp": stamp, "protocol": "rest",
                             "edge_device_id": device["device_id"], "data_type": "detection",
                             "payload": {"plate": plate, "confidence": 0.9}})  # fmt: skip
        for plate in plates:
            sent[plate] = now
        response = session.post(base + "/api/v1/ingest/batch/", data=json.dumps({"messages": messages}), headers=headers)
        response.raise_for_status()
        POSTS.append(time.monotonic() - now)
        tick += 1
        time.sleep(max(0.0, start + tick * TICK_S - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--hit-every", type=int, default=50)
    parser.add_argument("--entries", type=int, default=10_000)
    args = parser.parse_args()

    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    url = fresh_database("lpr_alerts_bench")
    devices = [create_device(url, f"ALERTCAM{i}") for i in range(CAMERAS)]
    receiver = Receiver()
    plates = setup_watchlist(url, args.entries, receiver.url)
    hits = plates[: int(args.rate * args.seconds / args.hit_every) + CAMERAS]
    worker = start_worker(url)
    sent: dict[str, float] = {}
    try:
        with daphne(url, REDIS_URL=REDIS_URL, MQTT_EMBEDDED_PORT=str(free_port())) as base:
            say(f"{args.rate:g} detections/s for {args.seconds:g} s from {CAMERAS} cameras, 1 in {args.hit_every} listed")
            counter = [0]
            threads = [threading.Thread(target=camera_loop, args=(base, d, args.rate / CAMERAS, args.seconds,
                                                                  hits, args.hit_every, sent, counter))
                       for d in devices]  # fmt: skip
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            achieved = counter[0] / (time.monotonic() - started)
            deadline = time.monotonic() + 15
            while len(receiver.arrived) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(20)
    report(sent, receiver.arrived, achieved, args)


def later_reads_of_a_passage(plates: list[str]) -> set[str]:
    """Listed plates read in the passage of an earlier listed read (one plate within an edit of the other,
    same camera, within seconds): correctly alerted once, for the first."""
    from detections.models import Detection

    rows = sorted(Detection.objects.filter(plate__in=plates).values_list("captured_at", "id", "plate", "passage_id"))
    first: dict[int, str] = {}
    for _, _, plate, passage in rows:
        first.setdefault(passage, plate)
    return {plate for _, _, plate, passage in rows if first[passage] != plate}


def report(sent: dict[str, float], arrived: dict[str, float], achieved: float, args) -> None:
    merged = later_reads_of_a_passage(list(sent))
    sent = {p: t for p, t in sent.items() if p not in merged}
    times = sorted(arrived[p] - sent[p] for p in sent if p in arrived)
    missing = len(sent) - len(times)
    if not times:
        print("no alert reached the webhook")
        sys.exit(1)
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"{'what':<58} {'value':>10} {'limit':>8}")
    print(f"{'detections/s offered (achieved)':<58} {achieved:>10.0f} {args.rate:>8.0f}")
    print(f"{'watchlist entries (half exact, half lenient)':<58} {args.entries:>10d}")
    print(f"{'alerts expected (passages with a listed read) / delivered':<58} {len(sent):>5d}/{len(times):<4d}")
    print(f"{'  listed reads in an already alerted passage (no new alert)':<58} {len(merged):>10d}")
    print(f"{'ingest-to-webhook p50 (s)':<58} {p50:>10.3f}")
    print(f"{'ingest-to-webhook p99 (s)':<58} {p99:>10.3f} {TARGET_P99_S:>8.1f}")
    print(f"{'ingest-to-webhook max (s)':<58} {times[-1]:>10.3f}")
    posts = sorted(POSTS)
    print(f"{'  ingest POST (stored and acked), median / p99 (s)':<58} {statistics.median(posts):>10.3f} "
          f"{posts[int(len(posts) * 0.99)]:>8.3f}")
    stages = breakdown()
    for name, values in stages.items():
        if values:
            print(f"{name:<58} {statistics.median(values):>10.3f}")
    print("p99 under target" if p99 < TARGET_P99_S and not missing else "TARGET MISSED (machine shared; see note)")


def breakdown() -> dict[str, list[float]]:
    """Medians of each stage, from the rows: stored → alert raised → webhook delivery logged."""
    from detections.alert_models import Delivery

    rows = Delivery.objects.filter(channel="webhook", state="delivered").values_list(
        "alert__detection__received_at", "alert__raised_at", "delivered_at")
    return {
        "  of which received → alert raised, median (s)": [(r - d).total_seconds() for d, r, _ in rows],
        "  of which alert raised → webhook answered, median (s)": [(w - r).total_seconds() for _, r, w in rows],
    }


if __name__ == "__main__":
    main()
