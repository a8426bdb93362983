"""A database connection lost in the middle of the ingest transaction is an outage (`unavailable`, resend later),
never a bug: the MQTT bridge refuses and acknowledges input that raises anything else, which would lose it."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from tests.factories import envelope
from transport import pipeline
from transport.models import Message


@pytest.mark.django_db(transaction=True)
def test_a_connection_killed_under_the_bulk_insert_is_answered_unavailable(device):
    pipeline.ingest(envelope(device.id), device, "rest")  # the connection is open and has served a write
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    s = connection.settings_dict
    with psycopg.connect(host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"],
                         password=s["PASSWORD"], dbname=s["NAME"], autocommit=True) as admin:  # fmt: skip
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])

    env = envelope(device.id)
    ack = pipeline.ingest(env, device, "rest")  # its first statement is the ledger's bulk INSERT, on a dead socket

    assert (ack.status, ack.error, ack.retry_after) == ("unavailable", "unavailable", pipeline.UNAVAILABLE_RETRY_S)
    connection.close()
    assert pipeline.ingest(env, device, "rest").status == "accepted"  # and the resend is stored
    assert Message.objects.filter(device=device).count() == 2
