"""How health logs and reported configurations are stored: each write maintains only indexes something reads."""

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.django_db


def _indexes(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return [row[0].split(" USING ", 1)[1] for row in cursor.fetchall()]


@pytest.mark.parametrize("table, by_device", [("devices_healthlog", "btree (device_id, reported_at DESC)"),
                                              ("devices_reportedconfig", "btree (device_id, version DESC)")])  # fmt: skip
def test_a_devices_rows_are_found_by_one_index_not_three(table, by_device):
    indexes = _indexes(table)
    assert by_device in indexes
    assert [i for i in indexes if i.startswith("btree (device_id") and i != by_device] == []


def test_retention_finds_old_health_logs_by_a_time_index():
    assert "brin (reported_at)" in _indexes("devices_healthlog")


def test_the_models_and_migrations_agree():
    call_command("makemigrations", "devices", "--check", "--dry-run", verbosity=0)
