"""bench/seed.py fills every column of the tables it seeds, the way the pipeline would, and leaves them indexed."""

import pytest

from tests.support import server_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_seeded_reads_have_ledger_rows_search_text_and_indexes_back():
    from django.db import connection

    from bench import seed
    from detections import plates
    from detections.models import Detection
    from detections.search import Query, search
    from transport.models import Message

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'detections_detection'")
        indexes = cursor.fetchone()[0]

    seeded = seed.seed(server_database_url(), 3_000, devices=4, days=1, say=lambda _: None)

    assert seeded["rows"] == Detection.objects.count() == Message.objects.count() == 3_000
    read = Detection.objects.exclude(candidates=[]).order_by("captured_at")[500]  # not the newest car, read once
    assert read.search_text == plates.search_text(read.plate, [c["plate"] for c in read.candidates])
    assert read.plate_normalized == plates.normalize(read.plate)
    assert Detection.objects.filter(plate=read.plate, device=read.device).count() >= 2  # a car read more than once
    assert read.message_id in set(search(Query(plate=read.plate)).values_list("message_id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'detections_detection'")
        assert cursor.fetchone()[0] == indexes
