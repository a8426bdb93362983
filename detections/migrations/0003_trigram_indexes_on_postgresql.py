"""pg_trgm GIN indexes for prefix, wildcard and fuzzy plate search, and fuzzystrmatch for the precise re-check.

PostgreSQL only: on SQLite (the laptop default) search scans, with the
re-check registered as a Python function (detections/apps.py).
"""

from django.contrib.postgres.operations import CreateExtension
from django.db import migrations

INDEXES = [
    ("detections_plate_trgm", "plate_normalized"),
    ("detections_search_text_trgm", "search_text"),
]


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, column in INDEXES:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON detections_detection USING gin ({column} gin_trgm_ops)"
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _ in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("detections", "0002_passages_search_text_and_thumbnails")]

    operations = [
        CreateExtension("pg_trgm"),
        CreateExtension("fuzzystrmatch"),
        migrations.RunPython(create_indexes, drop_indexes),
    ]
