"""Health logs and reported configurations lose their single-column device index: the (device, time) and
(device, version) indexes already find a device's rows. Retention deletes health logs by report time across
devices: a block-range (BRIN) index on reported_at finds them without reading the table (PostgreSQL only)."""

import django.db.models.deletion
from django.db import migrations, models

BRIN = ("devices_healthlog_reported_brin", "devices_healthlog", "reported_at")


def create_brin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        name, table, column = BRIN
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING brin ({column})")


def drop_brin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {BRIN[0]}")


class Migration(migrations.Migration):

    dependencies = [
        ('devices', '0004_operators_group'),
    ]

    operations = [
        migrations.AlterField(
            model_name='healthlog',
            name='device',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='health_logs', to='devices.device'),
        ),
        migrations.AlterField(
            model_name='reportedconfig',
            name='device',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='reported_configs', to='devices.device'),
        ),
        migrations.RunPython(create_brin, drop_brin),
    ]
