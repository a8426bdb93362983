"""The ingest path's statements are prepared on the server once they repeat (DB_PREPARE_THRESHOLD)."""

import random
import string

import pytest
from django.db import connection

from tests.factories import envelope
from detections.models import Detection
from transport import one_statement, pipeline
from transport.pipeline import Inbound

pytestmark = pytest.mark.django_db


def _batch(devices, per_device=2):
    def plate():
        return "".join(random.choices(string.ascii_uppercase, k=3)) + "".join(random.choices(string.digits, k=4))

    return [Inbound(envelope(d.id, payload={"plate": plate(), "confidence": 0.9}), d, "ws")
            for d in devices for _ in range(per_device)]  # fmt: skip


def _numbered(sql: str) -> str:
    """The statement as PostgreSQL lists it: psycopg's placeholders as `$1`, `$2`..."""
    parts = sql.replace("%s", "%b").split("%b")
    return "".join(part + (f"${n}" if n < len(parts) else "") for n, part in enumerate(parts, 1))


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_repeated_ingest_statements_are_prepared_and_still_store_everything(make_device, both_write_paths):
    devices = [make_device(rate_limit_per_s=1e6) for _ in range(3)]
    batches = [_batch(devices) for _ in range(8)]

    acks = [ack for batch in batches for ack in pipeline.ingest_batch(batch)]

    assert {ack.status for ack in acks} == {pipeline.ACCEPTED}
    assert Detection.objects.count() == 48
    prepared = _prepared()
    if both_write_paths == "one statement":
        assert [s for s in prepared if "lpr_ingest" in s] == [_numbered(one_statement.SQL)], prepared
        return
    for table in ("transport_message", "detections_detection", "detections_passage"):
        assert any(f'INSERT INTO "{table}"' in statement for statement in prepared), (table, prepared)
    assert any("levenshtein_less_equal" in statement for statement in prepared), prepared


@pytest.mark.usefixtures("both_write_paths")
def test_prepared_statements_survive_a_new_partition(make_device):
    """A partition made while the statements are prepared (the daily task) does not break the next write."""
    from datetime import timedelta

    from django.utils import timezone

    from detections import partitions

    devices = [make_device(rate_limit_per_s=1e6) for _ in range(2)]
    for _ in range(6):
        pipeline.ingest_batch(_batch(devices))
    made = partitions.ensure(today=(timezone.now() + timedelta(days=40)).date(), ahead=1, behind=0)

    acks = pipeline.ingest_batch(_batch(devices))

    assert {ack.status for ack in acks} == {pipeline.ACCEPTED}
    assert made


def test_batches_of_every_size_below_the_copy_threshold_share_one_statement_a_table(make_device, monkeypatch):
    from lpr_server import bulk

    monkeypatch.setattr(one_statement, "fits", lambda items: False)  # the set-wise path's statements

    devices = [make_device(rate_limit_per_s=1e6) for _ in range(bulk.COPY_FROM_ROWS - 1)]
    for size in [1, 2, 3, 5, 8, 13, 21, 34, len(devices)] * 6:
        acks = pipeline.ingest_batch(_batch(devices[:size], per_device=1))
        assert {ack.status for ack in acks} == {pipeline.ACCEPTED}

    prepared = _prepared()
    for table in ("transport_message", "detections_detection", "detections_passage"):
        assert len([s for s in prepared if f'INSERT INTO "{table}"' in s]) == 1, (table, prepared)


def test_a_value_longer_than_its_column_is_refused_not_cut_short(device):
    import uuid

    from django.db import DataError, transaction
    from django.utils import timezone

    from lpr_server import bulk
    from transport.models import Message
    from transport.store import LEDGER_FIELDS

    now = timezone.now()
    row = (uuid.uuid4(), device.id, "detection" * 3, "ws", "ws", None, now, now, None)  # data_type: 27 of 16

    with pytest.raises(DataError), transaction.atomic():
        bulk.insert_new(Message, LEDGER_FIELDS, [row], key="message_id")

    assert not Message.objects.filter(message_id=row[0]).exists()
