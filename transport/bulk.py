"""Bulk INSERTs for the ingest hot path.

The ORM's `bulk_create` builds a model instance per row and cannot say which
rows `ON CONFLICT DO NOTHING` skipped. Here rows are plain tuples:

- On PostgreSQL, rows that may conflict go in one `INSERT … SELECT FROM
  unnest(<one array per column>) ON CONFLICT DO NOTHING RETURNING …` (a
  handful of parameters, whatever the row count, and RETURNING says exactly
  what was inserted); rows that cannot conflict go through `COPY`, the
  fastest way into PostgreSQL.
- On SQLite (the laptop default) a multi-row `VALUES` does both.

Both run on Django's connection, inside the caller's transaction.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import msgspec
import psycopg
from django.db import connection, models

_json = msgspec.json.Encoder()


def insert(
    model: type[models.Model],
    fields: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    skip_conflicts_on: str | None = None,
    returning: str | None = None,
) -> list[Any]:
    """Insert `rows` (tuples in the order of `fields`); return the `returning` column of inserted rows."""
    if not rows:
        return []
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    conflict = meta.get_field(skip_conflicts_on).column if skip_conflicts_on else None
    back = meta.get_field(returning) if returning else None
    if connection.vendor != "postgresql":
        return _values(meta.db_table, columns, rows, conflict, back)
    if conflict or back:
        return _unnest(meta.db_table, columns, rows, conflict, back)
    _copy(meta.db_table, columns, rows)
    return []


def _unnest(table: str, columns: list, rows: Sequence[Sequence[Any]], conflict: str | None, back) -> list[Any]:
    arrays = [list(col) for col in zip(*rows)]
    for i, field in enumerate(columns):
        if isinstance(field, models.JSONField):
            arrays[i] = [_to_json(v) for v in arrays[i]]
    casts = ", ".join(f"%s::{_array_type(f)}" for f in columns)
    sql = f"INSERT INTO {_q(table)} ({_names(columns)}) SELECT * FROM unnest({casts})"
    if conflict:
        sql += f" ON CONFLICT ({_q(conflict)}) DO NOTHING"
    if back:
        sql += f" RETURNING {_q(back.column)}"
    with _logged(sql), _raw_cursor() as cursor:
        cursor.execute(sql, arrays)
        return [r[0] for r in cursor.fetchall()] if back else []


def _copy(table: str, columns: list, rows: Sequence[Sequence[Any]]) -> None:
    json_at = [i for i, f in enumerate(columns) if isinstance(f, models.JSONField)]
    sql = f"COPY {_q(table)} ({_names(columns)}) FROM STDIN"
    with _logged(sql), _raw_cursor() as cursor, cursor.copy(sql) as copy:
        for row in rows:
            if json_at:
                row = list(row)
                for i in json_at:
                    row[i] = _to_json(row[i])
            copy.write_row(row)


def _values(table: str, columns: list, rows: Sequence[Sequence[Any]], conflict: str | None, back) -> list[Any]:
    converters: list[Callable[[Any], Any]] = [
        _to_json if isinstance(f, models.JSONField) else (lambda v, f=f: f.get_db_prep_save(v, connection))
        for f in columns
    ]
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    tail = (f" ON CONFLICT ({_q(conflict)}) DO NOTHING" if conflict else "") + (
        f" RETURNING {_q(back.column)}" if back else ""
    )
    per_chunk = max(1, (connection.features.max_query_params or 999) // len(columns))
    out: list[Any] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_chunk):
            chunk = rows[start : start + per_chunk]
            params = [conv(v) for row in chunk for conv, v in zip(converters, row)]
            cursor.execute(f"INSERT INTO {_q(table)} ({_names(columns)}) VALUES " + ", ".join([placeholders] * len(chunk)) + tail, params)
            if back:
                out.extend(back.to_python(r[0]) for r in cursor.fetchall())
    return out


@contextmanager
def _logged(sql: str) -> Iterator[None]:
    """Show the statement in `connection.queries`, as Django's debug cursor does for its own; and raise psycopg's
    errors as Django's, as its cursors do (callers must see a lost connection as OperationalError: an outage)."""
    started = time.perf_counter()
    with connection.wrap_database_errors:
        yield
    if connection.queries_logged:
        connection.queries_log.append({"sql": sql, "time": f"{time.perf_counter() - started:.3f}"})


def _raw_cursor() -> psycopg.Cursor:
    """A server-side-binding psycopg cursor on Django's connection (Django's own binds client-side)."""
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def _array_type(field: models.Field) -> str:
    return ("jsonb" if isinstance(field, models.JSONField) else field.db_type(connection)) + "[]"


def _to_json(value: Any) -> str | None:
    return None if value is None else _json.encode(value).decode()


def _names(columns: list) -> str:
    return ", ".join(_q(f.column) for f in columns)


def _q(name: str) -> str:
    return connection.ops.quote_name(name)
