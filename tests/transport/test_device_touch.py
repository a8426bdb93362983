"""A batch keeps its devices' last_seen current in one statement, and never waits for a row someone else holds."""

import threading

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devices.models import Device
from tests.factories import envelope
from transport import announce, one_statement, pipeline
from transport.pipeline import Inbound

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("both_write_paths")]


def _ingest(devices, via="ws"):
    acks = pipeline.ingest_batch([Inbound(envelope(d.id), d, via) for d in devices])
    assert {ack.status for ack in acks} == {pipeline.ACCEPTED}


def _other_connection():
    s = connection.settings_dict
    return psycopg.connect(host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"],
                           password=s["PASSWORD"] or None, dbname=s["NAME"])  # fmt: skip


def test_a_batch_touches_all_its_devices_in_one_statement(make_device, both_write_paths, monkeypatch):
    monkeypatch.setattr(announce, "consumers", [])  # what runs after the commit (alert intake) queries too
    devices = [make_device(rate_limit_per_s=1e6) for _ in range(4)]

    with CaptureQueriesContext(connection) as queries:
        _ingest(devices, via="mqtt")

    if both_write_paths == "one statement":  # the touch is part of the one statement that stores everything
        assert [q["sql"] for q in queries] == [one_statement.SQL]
    else:
        touches = [q["sql"] for q in queries if "devices_device" in q["sql"]]
        assert len(touches) == 1, touches
    assert {(d.last_transport, d.last_seen_at is not None) for d in Device.objects.filter(pk__in=[d.pk for d in devices])} == {("mqtt", True)}


def test_a_device_row_held_elsewhere_is_skipped_without_waiting_and_touched_later(make_device):
    held, free = make_device(rate_limit_per_s=1e6), make_device(rate_limit_per_s=1e6)
    other = _other_connection()
    try:
        other.execute("SELECT 1 FROM devices_device WHERE id = %s FOR UPDATE", [held.id])  # held until rollback
        writer = threading.Thread(target=lambda: (_ingest([held, free]), connection.close()))
        writer.start()
        writer.join(10)
        assert not writer.is_alive(), "the batch waited for a device row another transaction holds"
        assert Device.objects.get(pk=held.pk).last_seen_at is None
        assert Device.objects.get(pk=free.pk).last_seen_at is not None
    finally:
        other.rollback()
        other.close()

    _ingest([Device.objects.get(pk=held.pk)])
    assert Device.objects.get(pk=held.pk).last_seen_at is not None
