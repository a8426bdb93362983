"""Multi-row INSERTs for the ingest hot path.

The ORM's `bulk_create` builds a model instance per row and cannot say which
rows `ON CONFLICT DO NOTHING` skipped; here rows are plain tuples and
`RETURNING` tells the caller exactly what was inserted. Works on PostgreSQL
(production, tests) and SQLite (the laptop default).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import msgspec
from django.db import connection, models

_MAX_PARAMS = 60_000
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
    placeholders = "(" + ", ".join(_placeholder(f) for f in columns) + ")"
    converters = [_converter(f) for f in columns]
    sql_head = f"INSERT INTO {_q(meta.db_table)} ({', '.join(_q(f.column) for f in columns)}) VALUES "
    sql_tail = ""
    if skip_conflicts_on:
        sql_tail += f" ON CONFLICT ({_q(meta.get_field(skip_conflicts_on).column)}) DO NOTHING"
    if returning:
        sql_tail += f" RETURNING {_q(meta.get_field(returning).column)}"

    out: list[Any] = []
    per_chunk = max(1, _param_limit() // len(columns))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_chunk):
            chunk = rows[start : start + per_chunk]
            params = [conv(v) if conv else v for row in chunk for conv, v in zip(converters, row)]
            cursor.execute(sql_head + ", ".join([placeholders] * len(chunk)) + sql_tail, params)
            if returning:
                out.extend(r[0] for r in cursor.fetchall())
    if returning and connection.vendor == "sqlite":
        field = meta.get_field(returning)
        out = [field.to_python(v) for v in out]
    return out


def _placeholder(field: models.Field) -> str:
    if isinstance(field, models.JSONField) and connection.vendor == "postgresql":
        return "%s::jsonb"
    return "%s"


def _converter(field: models.Field) -> Callable[[Any], Any] | None:
    if isinstance(field, models.JSONField):
        return lambda v: None if v is None else _json.encode(v).decode()
    if connection.vendor == "postgresql":
        return None  # psycopg adapts str, numbers, datetimes and UUIDs natively.
    return lambda v: field.get_db_prep_save(v, connection)


def _param_limit() -> int:
    return min(connection.features.max_query_params or _MAX_PARAMS, _MAX_PARAMS)


def _q(name: str) -> str:
    return connection.ops.quote_name(name)
