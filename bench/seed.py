"""Seeding a benchmark database fast: the one place that writes rows for big-table benchmarks.

Rows are made in SQL (generate_series, plates from md5 of the car number, so
a run is reproducible), with the table's secondary indexes dropped during the
load and rebuilt after. The INSERTs are written against the models' columns:
a column this module names gets its expression, any other column its NULL or
its model default, and a new required column stops the seeding with a message
saying where to add it. On a partitioned detections table the day partitions
of the seeded range are made first (detections.partitions, when present).

Detections: `rows` reads from `devices` cameras over the last `days` days,
evenly spaced; each car is read 3 times by one camera; a third of the reads
carry a candidate plate. Each read also has its row in the message ledger.
Health: every camera reports every 30 s over the last 2 days.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Callable

import psycopg
import psycopg.sql

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
CHUNK = 1_000_000
WORKERS = 2  # connections loading at once: the machine's two cores
HEALTH_EVERY_S = 30
HEALTH_DAYS = 2


def _letter(byte: int) -> str:
    return f"substr('{LETTERS}', 1 + mod(get_byte(h, {byte}), {len(LETTERS)}), 1)"


def _reads(first: int, last: int, rows: int, days: float) -> str:
    """The seeded reads i = first..last as a subquery: i, car, ts (capture time), h (md5 bytes of the car), p, cand."""
    step = days * 86400 / rows
    digits = "lpad(mod(get_byte(h, 2) * 256 + get_byte(h, 3), 1000)::text, 3, '0')"
    plate = f"{_letter(0)} || {_letter(1)} || {digits} || {_letter(4)} || {_letter(5)}"
    # OFFSET 0 keeps PostgreSQL from folding the subqueries into one, which would compute md5 once per use of h.
    return f"""(SELECT i, car, ts, h, p, left(p, 6) || {_letter(7)} AS cand FROM (
        SELECT i, car, ts, h, {plate} AS p FROM (
            SELECT i, div(i, 3) AS car, now() - ({rows} - i) * {step} * interval '1 second' AS ts,
                   decode(md5(div(i, 3)::text), 'hex') AS h
            FROM generate_series({first}, {last}) AS i OFFSET 0) numbered OFFSET 0) plated) reads"""


def _detection_columns(devices: int) -> dict[str, str]:
    device = f"'BIG' || lpad(mod(car, {devices})::text, 2, '0')"
    from detections.plates import FOLD_FROM, FOLD_TO  # letters and digits only: safe inside quotes

    via = "(ARRAY['rest', 'websocket', 'socketio', 'mqtt'])[1 + mod(car, 4)]"
    fold = f"translate({{}}, '{FOLD_FROM}', '{FOLD_TO}')"
    return {
        "message_id": "md5('d' || i)::uuid", "device_id": device, "plate": "p", "plate_normalized": "p",
        "confidence": "0.7 + mod(get_byte(h, 6), 30) / 100.0", "region": "'de'",
        "candidates": "CASE WHEN mod(i, 3) = 0"
                      " THEN jsonb_build_array(jsonb_build_object('plate', cand, 'confidence', 0.4))"
                      " ELSE '[]'::jsonb END",
        "vehicle": """'{"type": "car"}'::jsonb""",
        "direction": "CASE WHEN mod(car, 2) = 0 THEN 'approaching' ELSE 'receding' END",
        "captured_at": "ts", "received_at": "ts + interval '0.2 second'", "received_via": via, "protocol": via,
        "latency_ms": "200",
        "search_text": f"{fold.format('p')} || CASE WHEN mod(i, 3) = 0 AND {fold.format('cand')} <> {fold.format('p')}"
                       f" THEN ' ' || {fold.format('cand')} ELSE '' END",
    }  # fmt: skip


def _ledger_columns(devices: int) -> dict[str, str]:
    d = _detection_columns(devices)
    return {"message_id": d["message_id"], "device_id": d["device_id"], "data_type": "'detection'",
            "received_via": d["received_via"], "protocol": d["protocol"], "sequence": "i", "sent_at": "ts",
            "received_at": d["received_at"], "latency_ms": "200"}  # fmt: skip


HEALTH_COLUMNS = {
    "message_id": "md5('h' || d || ts::text)::uuid", "device_id": "'BIG' || lpad(d::text, 2, '0')", "reported_at": "ts",
    "received_at": "ts + interval '0.1 second'", "received_via": "'mqtt'",
    "cpu_percent": "20 + mod(extract(epoch FROM ts)::int, 30)", "memory_percent": "41", "temperature_c": "45",
    "fps": "25", "latency_ms": "20 + mod(extract(epoch FROM ts)::int, 15)",
    "packet_loss": "0", "uptime_percent": "100",
}  # fmt: skip


def _select(model, known: dict[str, str]) -> tuple[str, str]:
    """(column list, expression list) covering every column of `model`."""
    columns, expressions = [], []
    for field in model._meta.concrete_fields:
        if field.column in known:
            expression = known[field.column]
        elif field.primary_key and field.get_internal_type() in ("AutoField", "BigAutoField"):
            continue
        elif field.null:
            expression = "NULL"
        elif field.has_default() or field.empty_strings_allowed:
            value = field.get_default()
            if field.get_internal_type() == "JSONField":
                expression = psycopg.sql.Literal(json.dumps(value)).as_string(None) + "::jsonb"
            else:
                expression = psycopg.sql.Literal(value).as_string(None)
        else:
            raise SystemExit(f"bench/seed.py: {model._meta.db_table}.{field.column} is required and has no default; "
                             "give it an expression in bench/seed.py")  # fmt: skip
        columns.append(field.column)
        expressions.append(expression)
    return ", ".join(columns), ", ".join(expressions)


def _keys_and_indexes(conn, tables: list[str]) -> list[tuple[str, str, str]]:
    """(table, "constraint"|"index", name, definition) of every primary key, unique constraint and other index."""
    found = [(t, "constraint", name, definition) for t in tables for name, definition in conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint c WHERE conrelid = to_regclass(%s)"
        " AND contype IN ('p', 'u') AND NOT EXISTS"  # a key another table's foreign key points at stays
        " (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid)", [t])]  # fmt: skip
    constraints = {name for _, _, name, _ in found}
    kept = {name for t in tables for (name,) in conn.execute(
        "SELECT i.relname FROM pg_constraint c JOIN pg_class i ON i.oid = c.conindid WHERE c.conrelid = to_regclass(%s)"
        " AND c.contype IN ('p', 'u')", [t])} - constraints  # fmt: skip
    # ON ONLY: a partitioned table's index, made again over its partitions
    found += [(t, "index", name, definition.replace(" ON ONLY ", " ON "))
              for t in tables for name, definition in conn.execute(
                  "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [t])
              if name not in constraints and name not in kept]  # fmt: skip
    return found


def _drop(conn, keys: list[tuple[str, str, str, str]]) -> None:
    for table, kind, name, _ in sorted(keys, key=lambda k: k[1] == "constraint"):  # indexes first, then constraints
        conn.execute(
            f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"' if kind == "constraint" else f'DROP INDEX "{name}"'
        )


def _rebuild_sql(keys: list[tuple[str, str, str, str]]) -> list[str]:
    return [f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}' if kind == "constraint" else definition
            for table, kind, name, definition in sorted(keys, key=lambda k: k[1] != "constraint")]  # fmt: skip


def _in_parallel(database_url: str, statements: list[str], say: Callable[[str], None], what: str) -> None:
    """Run `statements` on WORKERS connections at once (both cores), foreign-key triggers off (the rows are whole)."""
    pending = queue.SimpleQueue()
    for n, statement in enumerate(statements, 1):
        pending.put((n, statement))
    failures: list[BaseException] = []
    started = time.perf_counter()

    def work() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute("SET synchronous_commit = off")
            conn.execute("SET maintenance_work_mem = '256MB'")
            while not failures:
                try:
                    n, statement = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    conn.execute(statement)
                except BaseException as exc:
                    failures.append(exc)
                    raise
                say(f"{what}: {n} of {len(statements)} done ({time.perf_counter() - started:.0f} s)")

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"bench/seed.py: {failures[0]}")


def _make_partitions(days: float, say: Callable[[str], None]) -> None:
    try:
        from detections import partitions
    except ImportError:
        return
    made = partitions.ensure(datetime.now(timezone.utc).date(), behind=int(days) + 1)
    if made:
        say(f"made {len(made)} day partitions")


def seed(
    database_url: str, rows: int, devices: int = 20, days: float = 30.0, say: Callable[[str], None] = print
) -> dict:
    """Detections (and their ledger rows) and health reports; returns the seconds each part took."""
    from detections.models import Detection
    from devices.models import HealthLog
    from transport.models import Message

    from .fleet import create_cameras

    started = time.perf_counter()
    create_cameras("BIG", devices)
    _make_partitions(days, say)
    inserts = []
    for first in range(1, rows + 1, CHUNK):
        last = min(rows, first + CHUNK - 1)
        for model, known in ((Detection, _detection_columns(devices)), (Message, _ledger_columns(devices))):
            inserts.append(_insert(model, known, _reads(first, last, rows, days)))
    reports = (f"generate_series(0, {devices - 1}) AS d, generate_series(now() - interval '{HEALTH_DAYS} days', now(),"
               f" interval '{HEALTH_EVERY_S} seconds') AS ts")  # fmt: skip
    inserts.append(_insert(HealthLog, HEALTH_COLUMNS, reports))
    tables = [Detection._meta.db_table, Message._meta.db_table, HealthLog._meta.db_table]
    with psycopg.connect(database_url, autocommit=True) as conn:
        keys = _keys_and_indexes(conn, tables)
        _drop(conn, keys)
    _in_parallel(database_url, inserts, say, "inserts (1,000,000 reads or their ledger rows each)")
    loaded = time.perf_counter()
    _in_parallel(
        database_url, _rebuild_sql(keys) + [f'ANALYZE "{t}"' for t in tables], say, "keys, indexes, statistics"
    )
    done = time.perf_counter()
    return {"rows": rows, "seconds": done - started, "insert_s": loaded - started, "index_s": done - loaded}


def _insert(model, known: dict[str, str], source: str) -> str:
    columns, expressions = _select(model, known)
    return f"INSERT INTO {model._meta.db_table} ({columns}) SELECT {expressions} FROM {source}"
