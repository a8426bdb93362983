"""Detections partitioned by capture time on PostgreSQL (detections/partitions.py).

The existing table is not copied: it becomes the partition of everything
captured before today (`detections_detection_legacy`), which retention drops
once its newest read has expired. Prefix and wildcard search now narrow with
the trigram index on `search_text`, so the one on `plate_normalized` goes.
"""

from django.db import migrations


def partition(apps, schema_editor):
    from detections import partitions

    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP INDEX IF EXISTS detections_plate_trgm")
    partitions.convert(schema_editor.connection)


def unpartition(apps, schema_editor):
    from detections import partitions

    if schema_editor.connection.vendor != "postgresql":
        return
    partitions.unconvert(schema_editor.connection)
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS detections_plate_trgm ON detections_detection USING gin (plate_normalized gin_trgm_ops)"
    )


class Migration(migrations.Migration):
    dependencies = [("detections", "0005_lean_detection_references")]

    operations = [migrations.RunPython(partition, unpartition)]
