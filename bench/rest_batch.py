"""REST batch ingest (detections stored per second) beside raw PostgreSQL executemany of the same rows.

    .venv/bin/python bench/rest_batch.py [--batches 30] [--clients 2]

Starts Daphne on a fresh PostgreSQL database (`lpr_bench`), posts batches of
1,000 detections from `--clients` threads, then inserts the same rows into a
copy of the detections table (same columns, indexes and unique constraint)
with psycopg's executemany and with COPY. Prints one table.
"""

import argparse
import json
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
import requests  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from bench.stack import create_device, daphne, fresh_database, say  # noqa: E402

BATCH = 1000


def make_batch(device_id: str, start: int) -> list[dict]:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return [
        {"message_id": str(uuid.uuid4()), "timestamp": now, "protocol": "rest", "edge_device_id": device_id,
         "data_type": "detection", "sequence": start + i,
         "payload": {"plate": f"AB{(start + i) % 100000:05d}", "confidence": 0.91, "region": "de",
                     "bbox": {"x": 1, "y": 2, "w": 100, "h": 40}}}
        for i in range(BATCH)
    ]  # fmt: skip


def rest_rate(base: str, key: str, device_id: str, batches: int, clients: int) -> float:
    bodies = [json.dumps({"messages": make_batch(device_id, i * BATCH)}).encode() for i in range(batches)]
    headers = {"Authorization": f"Device {key}", "Content-Type": "application/json"}
    warm = json.dumps({"messages": make_batch(device_id, 10**8)}).encode()
    requests.post(base + "/api/v1/ingest/batch/", data=warm, headers=headers).raise_for_status()
    queue = list(bodies)
    lock = threading.Lock()

    def worker():
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            response = session.post(base + "/api/v1/ingest/batch/", data=body, headers=headers)
            response.raise_for_status()
            assert all(r["status"] == "accepted" for r in response.json()["results"])

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return batches * BATCH / (time.perf_counter() - started)


def raw_rates(url: str, count: int) -> tuple[float, float]:
    """executemany and COPY of the very rows the server stored (fresh message ids), into a copy of the table."""
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE bench_detection (LIKE detections_detection INCLUDING ALL)")
        names = [c.name for c in conn.execute("SELECT * FROM detections_detection LIMIT 0").description if c.name != "id"]
        stored = conn.execute(f"SELECT {', '.join(names)} FROM detections_detection LIMIT %s", [count]).fetchall()
        at = names.index("message_id")
        json_columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'detections_detection' AND data_type = 'jsonb'")}
        wrap = [Jsonb if n in json_columns else None for n in names]

        def rows():
            return [tuple(uuid.uuid4() if i == at else (w(v) if w and v is not None else v) for i, (v, w) in enumerate(zip(row, wrap)))
                    for row in stored]

        columns, placeholders = ", ".join(names), ", ".join(["%s"] * len(names))
        conn.commit()
        batch = rows()
        started = time.perf_counter()
        with conn.cursor() as cur:
            for i in range(0, len(batch), BATCH):
                cur.executemany(f"INSERT INTO bench_detection ({columns}) VALUES ({placeholders})", batch[i : i + BATCH])
                conn.commit()
        executemany = len(batch) / (time.perf_counter() - started)
        batch = rows()
        started = time.perf_counter()
        with conn.cursor() as cur:
            for i in range(0, len(batch), BATCH):
                with cur.copy(f"COPY bench_detection ({columns}) FROM STDIN") as copy:
                    for row in batch[i : i + BATCH]:
                        copy.write_row(row)
                conn.commit()
        return executemany, len(batch) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    url = fresh_database("lpr_bench")
    device = create_device(url, "BENCH1")
    with daphne(url) as base:
        say(f"posting {args.batches} batches of {BATCH} from {args.clients} clients")
        rest = rest_rate(base, device["key"], "BENCH1", args.batches, args.clients)
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM detections_detection").fetchone()[0]
    assert stored == (args.batches + 1) * BATCH, f"stored {stored}, expected {(args.batches + 1) * BATCH}"
    say("raw PostgreSQL inserts of the same rows")
    executemany, copy = raw_rates(url, args.batches * BATCH)
    print(f"{'what':<52} {'detections/s':>13} {'ratio':>6}")
    print(f"{'REST batch ingest (Daphne, pipeline, ledger, acks)':<52} {rest:>13,.0f} {rest / executemany:>6.2f}")
    print(f"{'limit: psycopg executemany, same rows, same table':<52} {executemany:>13,.0f} {1:>6.2f}")
    print(f"{'limit: COPY, same rows, same table':<52} {copy:>13,.0f} {copy / executemany:>6.2f}")
    print(f"stored {stored:,} detections, none lost")


if __name__ == "__main__":
    main()
