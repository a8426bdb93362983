"""Plate search over 1,000,000 detections: fuzzy beside exact, prefix and wildcard, in the same run.

The fuzzy queries are seeded plates misread the way OCR does (a confusable
swapped, half the time a character lost); default k is 2 edits from 7
characters, else 1.

    .venv/bin/python bench/search.py [--rows 1000000] [--queries 200]

Seeds a dedicated database (lpr_bench_search, dropped and created; never
the test database) in SQL with generate_series, indexes dropped during the
load and rebuilt after, then times what the operator API does for one list
page: `search(query)`, its count and its first 50 rows. The limit: fuzzy
under 100 ms at p95; exact match is the floor it is measured against.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres:postgres@127.0.0.1:5432/postgres")
DB_NAME = "lpr_bench_search"
FUZZY_LIMIT_MS = 100.0
LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


def fresh_database() -> str:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + DB_NAME
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "MQTT_URL"}} | {"DATABASE_URL": url}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    return url


def setup_django(url: str) -> None:
    os.environ.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="lpr_server.settings", LOG_LEVEL="WARNING")
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def seed(rows: int, devices: int = 20) -> None:
    """Plates like 'AB123CD'; a third of the reads carry a candidate with the last character changed."""
    from django.db import connection

    from detections.plates import FOLD_FROM, FOLD_TO

    letter = f"substr('{LETTERS}', 1 + floor(random() * {len(LETTERS)})::int, 1)"
    digit = "floor(random() * 10)::int::text"
    from devices.models import Device

    started = time.perf_counter()
    Device.objects.bulk_create(
        [Device(id=f"BENCH{d}", site="north" if d % 2 else "south", key_hash=f"bench-{d}") for d in range(1, devices + 1)]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'detections_detection'"
            " AND indexname NOT LIKE '%%pkey' AND indexdef NOT LIKE 'CREATE UNIQUE%%'"
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SELECT setseed(0.42)")
        cursor.execute(
            f"""
            INSERT INTO detections_detection (message_id, device_id, plate, plate_normalized, confidence, region,
                candidates, vehicle, bbox, direction, captured_at, received_at, received_via, protocol, extra, search_text)
            SELECT md5(i::text)::uuid, 'BENCH' || (1 + i %% %s), p, p, c, 'de',
                CASE WHEN i %% 3 = 0 THEN jsonb_build_array(jsonb_build_object('plate', cand, 'confidence', c / 2)) ELSE '[]' END,
                '{{"type": "car"}}', NULL, '', now() - i * interval '2 seconds', now(), 'rest', 'rest', '{{}}',
                translate(p, %s, %s) || CASE WHEN i %% 3 = 0 THEN ' ' || translate(cand, %s, %s) ELSE '' END
            FROM (
                SELECT i, p, left(p, 6) || {letter} AS cand, round((0.5 + random() / 2)::numeric, 3)::float AS c
                FROM (SELECT i, {letter} || {letter} || {digit} || {digit} || {digit} || {letter} || {letter} AS p
                      FROM generate_series(1, %s) AS i) plates
            ) seeded
            """,
            [devices, FOLD_FROM, FOLD_TO, FOLD_FROM, FOLD_TO, rows],
        )
        loaded = time.perf_counter()
        for _, definition in indexes:
            cursor.execute(definition)
        cursor.execute("ANALYZE detections_detection")
    done = time.perf_counter()
    print(f"seeded {rows:,} detections in {done - started:.1f} s "
          f"(insert {loaded - started:.1f} s, {len(indexes)} indexes rebuilt and analyzed {done - loaded:.1f} s)")


def misread(plate: str, rng: random.Random) -> str:
    """What OCR might have made of it: a confusable swapped and, half the time, a character dropped."""
    swaps = {"B": "8", "8": "B", "O": "0", "0": "O", "S": "5", "5": "S", "Z": "2", "2": "Z", "G": "6", "1": "I", "D": "0"}
    chars = list(plate)
    spots = [i for i, ch in enumerate(chars) if ch in swaps]
    if spots:
        i = rng.choice(spots)
        chars[i] = swaps[chars[i]]
    if rng.random() < 0.5:
        del chars[rng.randrange(len(chars))]
    return "".join(chars)


def timed(query) -> float:
    from detections.search import search

    start = time.perf_counter()
    qs = search(query)
    qs.count()
    list(qs[:50])
    return (time.perf_counter() - start) * 1000


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def run(queries: int) -> None:
    from detections.models import Detection
    from detections.search import Query

    rng = random.Random(7)
    total = Detection.objects.count()
    picks = [Detection.objects.values_list("plate_normalized", flat=True)[rng.randrange(total)] for _ in range(queries)]
    modes = {
        "exact": [Query(plate=p) for p in picks],
        "prefix (3 chars)": [Query(plate=p[:3], match="prefix") for p in picks],
        "wildcard (*NNN*)": [Query(plate=f"*{p[2:5]}*", match="wildcard") for p in picks],
        "fuzzy (misread, default k)": [Query(plate=misread(p, rng), match="fuzzy") for p in picks],
        "fuzzy + device filter": [Query(plate=misread(p, rng), match="fuzzy", device="BENCH3") for p in picks],
        # not the default: two edits asked for on a 6-character plate (one trigram in seven must be shared)
        "fuzzy 6 chars, k=2 asked": [Query(plate=p[:6], match="fuzzy", distance=2) for p in picks[:50]],
    }
    for q in modes["exact"][:10] + modes["fuzzy (misread, default k)"][:10]:
        timed(q)  # warm caches; both modes alike
    results = {}
    for name, qs in modes.items():
        results[name] = percentiles([timed(q) for q in qs])
        p50, p95 = results[name]
        print(f"{name:30s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   ({len(qs)} queries, count + first 50 rows)")
    from detections.search import search

    fuzzy = modes["fuzzy (misread, default k)"]
    found = sum(p in set(search(q).values_list("plate_normalized", flat=True)) for p, q in zip(picks, fuzzy))
    matches = statistics.mean(search(q).count() for q in fuzzy)
    print(f"fuzzy found the plate it was misread from in {found}/{len(fuzzy)} queries; {matches:.1f} reads match on average")
    fuzzy_p95 = results["fuzzy (misread, default k)"][1]
    verdict = "within" if fuzzy_p95 < FUZZY_LIMIT_MS else "OVER"
    print(f"fuzzy p95 {fuzzy_p95:.1f} ms: {verdict} the {FUZZY_LIMIT_MS:.0f} ms limit "
          f"(exact p95 {results['exact'][1]:.1f} ms in the same run); 2 shared CPU cores, other work may be running")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    url = fresh_database()
    setup_django(url)
    seed(args.rows)
    run(args.queries)


if __name__ == "__main__":
    main()
