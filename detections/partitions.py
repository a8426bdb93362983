"""Detections partitioned by capture time (PostgreSQL declarative partitioning).

One partition per day (`detections_detection_pYYYYMMDD`), created ahead of
time by `ensure`, plus a DEFAULT partition that catches what falls outside
them (a camera clock far off, a backlog older than the oldest partition), so
an insert never fails for want of a partition. Retention drops whole
partitions (`drop_before`), and searches bounded in time read only the
partitions they need.

A table that predates partitioning is not copied: `convert` renames it to
`detections_detection_legacy` and attaches it as the partition for
everything captured before the cut-over, keeping its rows and indexes in
place; retention drops it once its newest read has expired.

On SQLite (the laptop default) the table stays a plain table and every
function here does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable

from django.db import connection as default_connection
from django.db import transaction

TABLE = "detections_detection"
LEGACY = f"{TABLE}_legacy"
DEFAULT = f"{TABLE}_default"
AHEAD_DAYS = 3  # a camera clock may run up to 24 h ahead; partitions exist before the first read needs them
BEHIND_DAYS = 1

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    lower: datetime | None  # None: MINVALUE (the legacy partition)
    upper: datetime | None  # None: the DEFAULT partition


def supported(connection=default_connection) -> bool:
    return connection.vendor == "postgresql"


def day_name(day: date) -> str:
    return f"{TABLE}_p{day:%Y%m%d}"


def is_partitioned(connection=default_connection) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [TABLE])
        row = cursor.fetchone()
    return bool(row) and row[0] == "p"


def partitions(connection=default_connection) -> list[Partition]:
    """The partitions of the detections table, oldest first, DEFAULT last."""
    if not supported(connection) or not is_partitioned(connection):
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
            [TABLE],
        )
        rows = cursor.fetchall()
    out = [_parse_bound(name, bound) for name, bound in rows]
    return sorted(out, key=lambda p: (p.upper is None, p.upper or datetime.max.replace(tzinfo=timezone.utc)))


def _parse_bound(name: str, bound: str) -> Partition:
    if bound == "DEFAULT":
        return Partition(name, None, None)
    # FOR VALUES FROM ('2026-12-01 00:00:00+00') TO ('2026-12-02 00:00:00+00'), or FROM (MINVALUE)
    low, high = (part.strip().strip("()'") for part in bound.removeprefix("FOR VALUES FROM").split(") TO ("))
    return Partition(name, None if low == "MINVALUE" else _timestamp(low), _timestamp(high))


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace(" ", "T") + (":00" if text[-3] in "+-" else ""))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def ensure(today: date | None = None, ahead: int = AHEAD_DAYS, behind: int = BEHIND_DAYS, say: Say = lambda _: None,
           connection=default_connection) -> list[str]:  # fmt: skip
    """Create the daily partitions from `behind` days ago to `ahead` days on; return the names created.

    Rows already in the DEFAULT partition for a day being created are moved
    into it (PostgreSQL refuses to create a partition whose rows sit in DEFAULT).
    """
    if not supported(connection) or not is_partitioned(connection):
        return []
    today = today or datetime.now(timezone.utc).date()
    existing = [p for p in partitions(connection) if p.upper is not None]
    created = []
    for offset in range(-behind, ahead + 1):
        day = today + timedelta(days=offset)
        low, high = _midnight(day), _midnight(day + timedelta(days=1))
        if any(p.upper > low and (p.lower is None or p.lower < high) for p in existing):
            continue  # the day exists already, or lies in the legacy partition's range
        with transaction.atomic(using=connection.alias):
            _create_day(connection, day_name(day), low, high)
        created.append(day_name(day))
        say(f"created partition {day_name(day)}")
    return created


def _create_day(connection, name: str, low: datetime, high: datetime) -> None:
    table, part, default = (connection.ops.quote_name(n) for n in (TABLE, name, DEFAULT))
    with connection.cursor() as cursor:
        # Never queue ingest behind this DDL for long: give up and let the next run try again.
        cursor.execute("SET LOCAL lock_timeout = '5s'")
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {default} WHERE captured_at >= %s AND captured_at < %s)", [low, high])
        if not cursor.fetchone()[0]:
            cursor.execute(f"CREATE TABLE {part} PARTITION OF {table} FOR VALUES FROM (%s) TO (%s)", [low, high])
            return
        # Move the day's rows out of DEFAULT into a table that then becomes the day's partition.
        cursor.execute(f"CREATE TABLE {part} (LIKE {table} INCLUDING DEFAULTS)")
        cursor.execute(f"WITH moved AS (DELETE FROM {default} WHERE captured_at >= %s AND captured_at < %s RETURNING *) "
                       f"INSERT INTO {part} SELECT * FROM moved", [low, high])  # fmt: skip
        cursor.execute(f"ALTER TABLE {table} ATTACH PARTITION {part} FOR VALUES FROM (%s) TO (%s)", [low, high])


def drop_before(cutoff: datetime, say: Say = lambda _: None, connection=default_connection) -> list[str]:
    """Drop every partition whose reads were all captured before `cutoff`; return their names.

    Alerts keep their own copy of the read (plate, time, device); their link
    to a dropped read is cleared first, as retention does for single rows.
    """
    from .alert_models import Alert

    dropped = []
    for p in partitions(connection):
        if p.upper is None or p.upper > cutoff:
            continue
        name, table = connection.ops.quote_name(p.name), connection.ops.quote_name(TABLE)
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '5s'")
            Alert.objects.filter(detection__isnull=False, captured_at__lt=p.upper).update(detection=None)
            cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {name}")
            cursor.execute(f"DROP TABLE {name}")
        dropped.append(p.name)
        say(f"dropped partition {p.name} (reads captured before {p.upper:%Y-%m-%d %H:%M} UTC)")
    return dropped


# --- converting an unpartitioned table ------------------------------------------------------------


def convert(connection=default_connection, today: date | None = None, say: Say = print) -> None:
    """Turn the plain detections table into a partitioned one, keeping its rows where they are."""
    if not supported(connection) or is_partitioned(connection):
        return
    today = today or datetime.now(timezone.utc).date()
    q = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), max(captured_at), max(id) FROM {q(TABLE)}")
        count, newest, max_id = cursor.fetchone()
        say(f"partitioning {TABLE}: {count:,} existing read(s)")
        _set_aside(cursor, q, TABLE, LEGACY, "_legacy")
        cursor.execute(f"ALTER TABLE {q(LEGACY)} ALTER COLUMN id DROP IDENTITY IF EXISTS")
        cursor.execute(f"CREATE TABLE {q(TABLE)} (LIKE {q(LEGACY)} INCLUDING DEFAULTS) PARTITION BY RANGE (captured_at)")
        cursor.execute(f"ALTER TABLE {q(TABLE)} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY")
        cursor.execute(f"ALTER TABLE {q(TABLE)} ADD PRIMARY KEY (id, captured_at)")
        _copy_indexes(cursor, LEGACY, TABLE, "_legacy", skip_unique=True)
        cut_over = _midnight(max(today, newest.date() + timedelta(days=1)) if newest else today)
        if count:
            say(f"attaching the existing rows as partition {LEGACY} (captured before {cut_over:%Y-%m-%d}); "
                "this reads the table once and builds one index")  # fmt: skip
            cursor.execute(f"ALTER TABLE {q(TABLE)} ATTACH PARTITION {q(LEGACY)} FOR VALUES FROM (MINVALUE) TO (%s)",
                           [cut_over])  # fmt: skip
        else:
            cursor.execute(f"DROP TABLE {q(LEGACY)}")
        cursor.execute(f"CREATE TABLE {q(DEFAULT)} PARTITION OF {q(TABLE)} DEFAULT")
        _restart_ids(cursor, max_id)
    ensure(today, say=say, connection=connection)


def unconvert(connection=default_connection, say: Say = print) -> None:
    """The reverse of `convert`: one plain table again, every row copied into it."""
    if not supported(connection) or not is_partitioned(connection):
        return
    q = connection.ops.quote_name
    old = f"{TABLE}_partitioned"
    with connection.cursor() as cursor:
        _set_aside(cursor, q, TABLE, old, "_partitioned")
        cursor.execute(f"CREATE TABLE {q(TABLE)} (LIKE {q(old)} INCLUDING DEFAULTS)")
        cursor.execute(f"INSERT INTO {q(TABLE)} SELECT * FROM {q(old)}")
        say(f"copied {cursor.rowcount:,} read(s) back into a plain {TABLE}")
        cursor.execute(f"SELECT max(id) FROM {q(TABLE)}")
        max_id = cursor.fetchone()[0]
        cursor.execute(f"ALTER TABLE {q(TABLE)} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY")
        cursor.execute(f"ALTER TABLE {q(TABLE)} ADD PRIMARY KEY (id)")
        _copy_indexes(cursor, old, TABLE, "_partitioned", skip_unique=False)
        _restart_ids(cursor, max_id)
        cursor.execute(f"DROP TABLE {q(old)}")


def _set_aside(cursor, q, table: str, new_name: str, suffix: str) -> None:
    """Rename `table`, drop its primary key and add `suffix` to its indexes' names, freeing the old names."""
    cursor.execute(f"ALTER TABLE {q(table)} RENAME TO {q(new_name)}")
    cursor.execute(f"ALTER TABLE {q(new_name)} DROP CONSTRAINT IF EXISTS {q(table + '_pkey')}")
    for name in _index_names(cursor, new_name):
        cursor.execute(f"ALTER INDEX {q(name)} RENAME TO {q(name[: 63 - len(suffix)] + suffix)}")


def _copy_indexes(cursor, source: str, target: str, suffix: str, skip_unique: bool) -> None:
    """Make the set-aside table's indexes again on `target`, under their original names."""
    for aside in _index_names(cursor, source):
        cursor.execute("SELECT pg_get_indexdef(to_regclass(%s))", [aside])
        definition = cursor.fetchone()[0]
        if skip_unique and definition.startswith("CREATE UNIQUE"):
            continue  # a partitioned table's unique index must include captured_at; the ledger keeps ids unique
        _, _, using = definition.partition(" USING ")
        cursor.execute(f"CREATE INDEX {aside.removesuffix(suffix)} ON {target} USING {using}")

def _restart_ids(cursor, max_id: int | None) -> None:
    cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, %s)", [TABLE, max_id or 1, max_id is not None])


def _index_names(cursor, table: str) -> list[str]:
    cursor.execute(
        "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = to_regclass(%s) AND NOT x.indisprimary ORDER BY i.relname",
        [table],
    )
    return [r[0] for r in cursor.fetchall()]
