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
import time
from datetime import datetime, timezone
from typing import Callable

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
CHUNK = 1_000_000
HEALTH_EVERY_S = 30
HEALTH_DAYS = 2


def _letter(byte: int) -> str:
    return f"substr('{LETTERS}', 1 + mod(get_byte(h, {byte}), {len(LETTERS)}), 1)"


def _reads(first: int, last: int, rows: int, days: float) -> str:
    """The seeded reads i = first..last as a subquery: i, car, ts (capture time), h (md5 bytes of the car), p, cand."""
    step = days * 86400 / rows
    plate = f"{_letter(0)} || {_letter(1)} || lpad(mod(get_byte(h, 2) * 256 + get_byte(h, 3), 1000)::text, 3, '0') || {_letter(4)} || {_letter(5)}"
    return f"""(SELECT i, car, ts, h, p, left(p, 6) || {_letter(7)} AS cand FROM (
        SELECT i, car, ts, h, {plate} AS p FROM (
            SELECT i, div(i, 3) AS car, now() - ({rows} - i) * {step} * interval '1 second' AS ts,
                   decode(md5(div(i, 3)::text), 'hex') AS h
            FROM generate_series({first}, {last}) AS i) numbered) plated) reads"""


def _detection_columns(devices: int) -> dict[str, str]:
    device = f"'BIG' || lpad(mod(car, {devices})::text, 2, '0')"
    from detections.plates import FOLD_FROM, FOLD_TO  # letters and digits only: safe inside quotes

    via = "(ARRAY['rest', 'websocket', 'socketio', 'mqtt'])[1 + mod(car, 4)]"
    fold = f"translate({{}}, '{FOLD_FROM}', '{FOLD_TO}')"
    return {
        "message_id": "md5('d' || i)::uuid", "device_id": device, "plate": "p", "plate_normalized": "p",
        "confidence": "0.7 + mod(get_byte(h, 6), 30) / 100.0", "region": "'de'",
        "candidates": "CASE WHEN mod(i, 3) = 0 THEN jsonb_build_array(jsonb_build_object('plate', cand, 'confidence', 0.4))"
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
    "received_at": "ts + interval '0.1 second'", "received_via": "'mqtt'", "cpu_percent": "20 + mod(extract(epoch FROM ts)::int, 30)",
    "memory_percent": "41", "temperature_c": "45", "fps": "25", "latency_ms": "20 + mod(extract(epoch FROM ts)::int, 15)",
    "packet_loss": "0", "uptime_percent": "100",
}  # fmt: skip


def _select(model, known: dict[str, str]) -> tuple[str, str, list]:
    """(column list, expression list, default parameters) covering every column of `model`."""
    columns, expressions, params = [], [], []
    for field in model._meta.concrete_fields:
        if field.column in known:
            expression = known[field.column]
        elif field.primary_key and field.get_internal_type() in ("AutoField", "BigAutoField"):
            continue
        elif field.null:
            expression = "NULL"
        elif field.has_default() or field.empty_strings_allowed:
            value = field.get_default()
            expression = "%s::jsonb" if field.get_internal_type() == "JSONField" else "%s"
            params.append(json.dumps(value) if field.get_internal_type() == "JSONField" else value)
        else:
            raise SystemExit(f"bench/seed.py: {model._meta.db_table}.{field.column} is required and has no default; "
                             "give it an expression in bench/seed.py")  # fmt: skip
        columns.append(field.column)
        expressions.append(expression)
    return ", ".join(columns), ", ".join(expressions), params


def _secondary_indexes(cursor, table: str) -> list[tuple[str, str]]:
    cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT LIKE %s"
                   " AND indexdef NOT LIKE %s", [table, "%pkey", "CREATE UNIQUE%"])  # fmt: skip
    return cursor.fetchall()


def _without_indexes(cursor, tables: list[str], load: Callable[[], None], say: Callable[[str], None]) -> float:
    """Run `load` with the tables' secondary indexes dropped; rebuild them; return the seconds the rebuild took."""
    indexes = [ix for table in tables for ix in _secondary_indexes(cursor, table)]
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    load()
    started = time.perf_counter()
    say(f"rebuilding {len(indexes)} indexes")
    cursor.execute("SET maintenance_work_mem = '256MB'")
    for _, definition in indexes:
        cursor.execute(definition.replace(" ON ONLY ", " ON "))  # a partitioned table's index covers its partitions
    for table in tables:
        cursor.execute(f'ANALYZE "{table}"')
    return time.perf_counter() - started


def _make_partitions(days: float, say: Callable[[str], None]) -> None:
    try:
        from detections import partitions
    except ImportError:
        return
    made = partitions.ensure(datetime.now(timezone.utc).date(), behind=int(days) + 1)
    if made:
        say(f"made {len(made)} day partitions")


def seed(rows: int, devices: int = 20, days: float = 30.0, say: Callable[[str], None] = print) -> dict:
    """Detections (and their ledger rows) and health reports; returns the seconds each part took."""
    from django.db import connection

    from detections.models import Detection
    from devices.models import HealthLog
    from transport.models import Message

    from .fleet import create_cameras

    started = time.perf_counter()
    create_cameras("BIG", devices)
    _make_partitions(days, say)
    reads_sql = [(model, *_select(model, known)) for model, known in
                 ((Detection, _detection_columns(devices)), (Message, _ledger_columns(devices)))]  # fmt: skip
    health_columns, health_expressions, health_params = _select(HealthLog, HEALTH_COLUMNS)
    tables = [Detection._meta.db_table, Message._meta.db_table, HealthLog._meta.db_table]
    loaded = {}

    def load() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
            for first in range(1, rows + 1, CHUNK):
                last = min(rows, first + CHUNK - 1)
                for model, columns, expressions, params in reads_sql:
                    cursor.execute(f"INSERT INTO {model._meta.db_table} ({columns}) SELECT {expressions} FROM "
                                   f"{_reads(first, last, rows, days)}", params)  # fmt: skip
                say(f"seeded {last:,} of {rows:,} detections ({time.perf_counter() - started:.0f} s)")
            cursor.execute(f"INSERT INTO {HealthLog._meta.db_table} ({health_columns}) SELECT {health_expressions} "
                           f"FROM generate_series(0, {devices - 1}) AS d, generate_series(now() - interval '{HEALTH_DAYS} days',"
                           f" now(), interval '{HEALTH_EVERY_S} seconds') AS ts", health_params)  # fmt: skip
        loaded["insert_s"] = time.perf_counter() - started

    with connection.cursor() as cursor:
        rebuild = _without_indexes(cursor, tables, load, say)
    return {"rows": rows, "seconds": time.perf_counter() - started, "insert_s": loaded["insert_s"], "index_s": rebuild}
