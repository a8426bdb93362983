"""bench/run --big: a 10,000,000-read detection table; dashboard pages and plate search, in server time.

Server time is the time Django takes to answer, measured in this process
with Django's test client (the request goes through the middleware, the view,
its queries and the template; no network): a logged-in staff operator opens
the overview (`/`) and a device page, and searches plates through the
operator API (`/api/v1/detections/?plate=..&match=exact|prefix|fuzzy`, the
count and first page of 50). Limit: p95 under 100 ms for each.
"""

from __future__ import annotations

import random
import time

from . import fleet, seed
from .measure import percentiles
from .report import load_line
from .stack import fresh_database, say

DATABASE = "lpr_bench_big"
LIMIT_MS = 100.0
PAGE_REQUESTS = 30
SEARCHES = 100
CONFUSABLE = {
    "B": "8",
    "8": "B",
    "O": "0",
    "0": "O",
    "S": "5",
    "5": "S",
    "Z": "2",
    "2": "Z",
    "G": "6",
    "1": "I",
    "D": "0",
}


def misread(plate: str, rng: random.Random) -> str:
    """What OCR might have made of it: a confusable swapped and, half the time, a character dropped."""
    chars = list(plate)
    spots = [i for i, ch in enumerate(chars) if ch in CONFUSABLE]
    if spots:
        i = rng.choice(spots)
        chars[i] = CONFUSABLE[chars[i]]
    if rng.random() < 0.5:
        del chars[rng.randrange(len(chars))]
    return "".join(chars)


def run(rows: int, meta: dict) -> dict:
    url = fresh_database(DATABASE)
    fleet.setup_django(url)
    say(f"seeding {rows:,} detections into {DATABASE}")
    seeded = seed.seed(url, rows, say=say)
    say(f"seeded in {seeded['seconds']:.0f} s (insert {seeded['insert_s']:.0f} s, indexes {seeded['index_s']:.0f} s)")
    client = logged_in_client()
    results = {"seed": seeded, "pages": pages(client), "search": searches(client)}
    print(table(results, meta))
    return {"meta": meta, "big": results}


def logged_in_client():
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create(username="bench-operator", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def timed(client, path: str, times: int) -> dict:
    for _ in range(3):
        client.get(path)  # warm: templates compiled, connections open
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"bench: GET {path} answered {response.status_code}")
    return percentiles(samples)


def pages(client) -> dict:
    say(f"dashboard pages, {PAGE_REQUESTS} requests each")
    return {"overview /": timed(client, "/", PAGE_REQUESTS),
            "device page": timed(client, "/dashboard/devices/BIG03/", PAGE_REQUESTS)}  # fmt: skip


def searches(client) -> dict:
    from django.db import connection

    rng = random.Random(7)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT plate_normalized FROM detections_detection TABLESAMPLE SYSTEM (0.05) LIMIT %s", [SEARCHES]
        )
        plates = [r[0] for r in cursor.fetchall()]
    say(f"plate search through the operator API, {len(plates)} plates per mode")
    queries = {"exact": [f"plate={p}&match=exact" for p in plates],
               "prefix (3 chars)": [f"plate={p[:3]}&match=prefix" for p in plates],
               "fuzzy (misread)": [f"plate={misread(p, rng)}&match=fuzzy" for p in plates]}  # fmt: skip
    out = {}
    for mode, qs in queries.items():
        for q in qs[:3]:
            client.get(f"/api/v1/detections/?{q}")
        samples = []
        for q in qs:
            started = time.perf_counter()
            response = client.get(f"/api/v1/detections/?{q}")
            samples.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"bench: search {q} answered {response.status_code}: {response.content[:300]!r}")
        out[mode] = percentiles(samples)
    return out


def table(results: dict, meta: dict) -> str:
    s = results["seed"]
    lines = [f"bench/run --big at {meta['started_at']} on {meta['cpus']} cores, commit {meta['commit']}",
             load_line(meta),
             f"seeded {s['rows']:,} detections (+ ledger rows, + health reports) in {s['seconds']:.0f} s: "
             f"insert {s['insert_s']:.0f} s, indexes rebuilt and analyzed {s['index_s']:.0f} s",
             "", f"{'server time (ms)':<28} {'p50':>8} {'p95':>8} {'limit':>8}  verdict"]  # fmt: skip
    for group in ("pages", "search"):
        for name, p in results[group].items():
            verdict = "PASS" if p["p95"] < LIMIT_MS else "FAIL"
            lines.append(
                f"{name:<28} {p['p50']:>8.1f} {p['p95']:>8.1f} {LIMIT_MS:>8.0f}  {verdict} (p95, {p['n']} requests)"
            )
    return "\n".join(lines)
