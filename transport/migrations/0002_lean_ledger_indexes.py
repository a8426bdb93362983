"""A leaner ledger for the ingest hot path: no per-row foreign-key check, and block-range (BRIN) indexes for
time windows instead of B-trees (PostgreSQL only). Per-device figures read (device, received_at)."""

import django.db.models.deletion
from django.db import migrations, models


BRIN_INDEXES = [("transport_message_received_brin", "received_at"), ("transport_message_sent_brin", "sent_at")]


def create_brin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name, column in BRIN_INDEXES:
            schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON transport_message USING brin ({column})")


def drop_brin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name, _ in BRIN_INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):

    dependencies = [
        ('devices', '0004_operators_group'),
        ('transport', '0001_initial'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='message',
            name='transport_m_device__fda400_idx',
        ),
        migrations.RemoveIndex(
            model_name='message',
            name='transport_m_receive_4a2b30_idx',
        ),
        migrations.AlterField(
            model_name='message',
            name='device',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='messages', to='devices.device'),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(fields=['device', 'received_at'], name='transport_m_device__3985ec_idx'),
        ),
        migrations.RunPython(create_brin, drop_brin),
    ]
