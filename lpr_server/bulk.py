"""Bulk writes for the ingest hot path.

The ORM's `bulk_create` builds a model instance per row and cannot say which
rows `ON CONFLICT DO NOTHING` skipped. Here rows are plain tuples, in the
order of the field names given, and each write picks the cheapest form:

- On PostgreSQL, up to COPY_FROM_ROWS rows go in one `INSERT … SELECT
  FROM unnest(…)`: one round trip, one array parameter a column, so the
  statement is the same whatever the number of rows and is prepared once.
  More rows go through binary `COPY`, the fastest way into PostgreSQL:
  straight into the table, or, when rows may conflict (`insert_new`), into a
  session-private staging table first and from there with one `INSERT …
  SELECT … ON CONFLICT DO NOTHING RETURNING`, so the database still says
  exactly what was new.
- On SQLite (the laptop default) a multi-row `VALUES` does everything.

Ids that later rows must refer to (a detection's passage) are taken from the
table's sequence up front (`allocate_ids`), so the rows can be copied.
Everything runs on Django's connection, inside the caller's transaction.
"""

from __future__ import annotations

import time
import weakref
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Callable, Iterator, Sequence

import msgspec
import psycopg
from psycopg import postgres, pq
from psycopg.adapt import Dumper
from django.db import connection, models

_json = msgspec.json.Encoder()


class JsonText(bytes):
    """A JSON column's value already encoded (e.g. a struct straight to JSON), written as it is."""


class _JsonbCopyDumper(Dumper):
    """jsonb in COPY's binary format: a version byte, then the JSON text, encoded here only if not already."""

    format = pq.Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + (obj if isinstance(obj, bytes) else _json.encode(obj))

COPY_FROM_ROWS = 100  # below this many rows one INSERT … SELECT FROM unnest beats COPY's extra round trips
_staged: weakref.WeakKeyDictionary[psycopg.Connection, set[str]] = weakref.WeakKeyDictionary()


def insert(model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert `rows` (tuples in the order of `fields`); nothing may conflict."""
    if not rows:
        return
    table, columns = model._meta.db_table, _columns(model, fields)
    if connection.vendor != "postgresql":
        _values(table, columns, rows, None)
    elif len(rows) < COPY_FROM_ROWS:
        _insert_unnest(table, columns, rows, None)
    else:
        _copy(table, columns, rows)


def insert_new(model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]], key: str) -> list[str]:
    """Insert the rows whose `key` is not in the table yet (the database decides); return their keys, as text
    (a UUID in its canonical form)."""
    if not rows:
        return []
    table, columns, key_field = model._meta.db_table, _columns(model, fields), model._meta.get_field(key)
    if connection.vendor != "postgresql":
        return _values(table, columns, rows, key_field)
    if len(rows) < COPY_FROM_ROWS:
        return _insert_unnest(table, columns, rows, key_field)
    stage = _staging_table(table)
    _copy(stage, columns, rows)
    names, key_column = _names(columns), _q(key_field.column)
    sql = (f"INSERT INTO {_q(table)} ({names}) SELECT {names} FROM {_q(stage)} "
           f"ON CONFLICT ({key_column}) DO NOTHING RETURNING {key_column}::text")  # fmt: skip
    with logged(sql), server_cursor() as cursor:
        cursor.execute(sql)
        return [r[0] for r in cursor.fetchall()]


def insert_with_ids(model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[int]:
    """Insert `rows` (PostgreSQL) and return their new primary keys, in order: a few rows by one
    `INSERT … RETURNING`, more by taking the keys from the sequence first and copying the rows with them."""
    if not rows:
        return []
    if len(rows) < COPY_FROM_ROWS:
        table, columns, pk = model._meta.db_table, _columns(model, fields), model._meta.pk.column
        return _insert_unnest(table, columns, rows, None, returning=pk)
    ids = allocate_ids(model, len(rows))
    insert(model, [model._meta.pk.name, *fields], [(pk, *row) for pk, row in zip(ids, rows)])
    return ids


def allocate_ids(model: type[models.Model], count: int) -> list[int]:
    """`count` fresh primary keys from the table's sequence (PostgreSQL), for rows written by `insert`."""
    if not count:
        return []
    sql = "SELECT nextval(%s::regclass) FROM generate_series(1, %s)"
    with logged(sql), server_cursor() as cursor:
        cursor.execute(sql, [_sequence_of(model), count])
        return [r[0] for r in cursor.fetchall()]


_sequences: dict[tuple[str, type[models.Model]], str] = {}


def _sequence_of(model: type[models.Model]) -> str:
    key = (connection.settings_dict["NAME"], model)
    if key not in _sequences:
        with server_cursor() as cursor:
            cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [model._meta.db_table, model._meta.pk.column])
            _sequences[key] = cursor.fetchone()[0]
    return _sequences[key]


def _staging_table(table: str) -> str:
    """A temporary twin of `table`, emptied at every commit, made once per database session."""
    stage = f"lpr_stage_{table}"
    connection.ensure_connection()
    made = _staged.setdefault(connection.connection, set())
    if stage not in made:
        with server_cursor() as cursor:
            cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_q(stage)} (LIKE {_q(table)} INCLUDING DEFAULTS) "
                           "ON COMMIT DELETE ROWS")  # fmt: skip
        made.add(stage)
    return stage


def _insert_unnest(table: str, columns: list, rows: Sequence[Sequence[Any]], back, returning: str | None = None) -> list:
    tail = ""
    if back is not None:
        tail = f" ON CONFLICT ({_q(back.column)}) DO NOTHING RETURNING {_q(back.column)}::text"
    elif returning is not None:
        tail = f" RETURNING {_q(returning)}"
    sql = _unnest_sql(_q(table), _names(columns), tuple(_array_type(f) for f in columns), tail)
    json_at = _json_columns(columns)
    params = [[_to_json(v) for v in column] if i in json_at else list(column) for i, column in enumerate(zip(*rows))]
    with logged(sql), server_cursor() as cursor:
        cursor.execute(sql, params)
        return [r[0] for r in cursor.fetchall()] if tail else []


@lru_cache(maxsize=256)
def _unnest_sql(table: str, names: str, array_types: tuple[str, ...], tail: str) -> str:
    # RETURNING gives the rows in the order unnest made them, the order of `rows` (Django's bulk_create relies on
    # the same for its own unnest inserts).
    arrays = ", ".join(f"%b::{t}" for t in array_types)  # binary: text-format arrays are quoted by regular expressions
    return f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){tail}"


@lru_cache(maxsize=256)
def _array_type(field: models.Field) -> str:
    # No length (`varchar[]`, not `varchar(64)[]`): an explicit cast would cut a long value short; the insert
    # refuses it.
    return f"{_binary_type(field)}[]"


def _copy(table: str, columns: list, rows: Sequence[Sequence[Any]]) -> None:
    """COPY in PostgreSQL's binary format: nothing to format as text here, nothing to parse there."""
    sql = f"COPY {_q(table)} ({_names(columns)}) FROM STDIN (FORMAT BINARY)"
    with logged(sql), server_cursor() as cursor:
        cursor.adapters.register_dumper(JsonText, _JsonbCopyDumper)  # also the dumper for every jsonb column here
        with cursor.copy(sql) as copy:
            copy.set_types([_binary_type(f) for f in columns])
            write = copy.write_row
            for row in rows:
                write(row)


@lru_cache(maxsize=256)
def _binary_type(field: models.Field) -> str:
    return field.db_type(connection).partition("(")[0]


def _values(table: str, columns: list, rows: Sequence[Sequence[Any]], back) -> list[Any]:
    """SQLite: multi-row INSERT … VALUES in chunks that fit its parameter limit."""
    converters: list[Callable[[Any], Any]] = [
        _to_json if isinstance(f, models.JSONField) else (lambda v, f=f: f.get_db_prep_save(v, connection))
        for f in columns
    ]
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    tail = f" ON CONFLICT ({_q(back.column)}) DO NOTHING RETURNING {_q(back.column)}" if back is not None else ""
    per_chunk = max(1, (connection.features.max_query_params or 999) // len(columns))
    out: list[Any] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_chunk):
            chunk = rows[start : start + per_chunk]
            params = [conv(v) for row in chunk for conv, v in zip(converters, row)]
            cursor.execute(f"INSERT INTO {_q(table)} ({_names(columns)}) VALUES " + ", ".join([placeholders] * len(chunk)) + tail, params)
            if back is not None:
                out.extend(str(back.to_python(r[0])) for r in cursor.fetchall())
    return out


@contextmanager
def logged(sql: str) -> Iterator[None]:
    """Show the statement in `connection.queries`, as Django's debug cursor does for its own."""
    started = time.perf_counter()
    yield
    if connection.queries_logged:
        connection.queries_log.append({"sql": sql, "time": f"{time.perf_counter() - started:.3f}"})


@contextmanager
def server_cursor() -> Iterator[psycopg.Cursor]:
    """A server-side-binding psycopg cursor on Django's connection (Django's own binds client-side). Its errors are
    raised as Django's, as its own cursors' are: a connection lost mid-write must read as OperationalError (an
    outage, answered `unavailable`), never as an unknown error (a 500; the MQTT bridge refused and lost the message)."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor


def _columns(model: type[models.Model], fields: Sequence[str]) -> list:
    return _fields_of(model, tuple(fields))


@lru_cache(maxsize=256)
def _fields_of(model: type[models.Model], fields: tuple[str, ...]) -> list:
    return [model._meta.get_field(name) for name in fields]


def _json_columns(columns: list) -> list[int]:
    return [i for i, f in enumerate(columns) if isinstance(f, models.JSONField)]


def _to_json(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, JsonText):
        return value.decode()
    return _json.encode(value).decode()


def _names(columns: list) -> str:
    return _quoted_names(connection.vendor, tuple(f.column for f in columns))


@lru_cache(maxsize=256)
def _quoted_names(vendor: str, columns: tuple[str, ...]) -> str:
    return ", ".join(_q(c) for c in columns)


def _q(name: str) -> str:
    return connection.ops.quote_name(name)
