"""Detections partitioned by capture time on PostgreSQL: where reads land, partitions made ahead, retention by
dropping them, searches reading only the days they ask for, and the migration from an unpartitioned table."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest
from django.core.management import call_command
from django.db import connection

from detections import partitions, retention
from detections.alert_models import Alert, Watchlist
from detections.models import Detection
from detections.search import Query, search
from tests.factories import DeviceFactory

from .helpers import ingest

pytestmark = pytest.mark.django_db

TODAY = datetime.now(timezone.utc).date()


@pytest.fixture(autouse=True)
def _postgresql_only():
    if not partitions.supported():
        pytest.skip("detections are partitioned on PostgreSQL only")


def midnight(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def partition_of(message_id: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM detections_detection WHERE message_id = %s", [message_id])
        return cursor.fetchone()[0]


def test_a_read_lands_in_its_days_partition_and_one_outside_every_day_in_default():
    device = DeviceFactory()
    today = ingest(device, "AB123CD", midnight(TODAY) + timedelta(hours=1))
    long_ago = ingest(device, "AB123CD", midnight(TODAY) - timedelta(days=200))
    assert partition_of(today) == partitions.day_name(TODAY)
    assert partition_of(long_ago) == partitions.DEFAULT


def test_making_days_ahead_moves_reads_already_in_default_into_them():
    device = DeviceFactory()
    later = TODAY + timedelta(days=partitions.AHEAD_DAYS + 4)
    stranded = ingest(device, "KL4403", midnight(TODAY) - timedelta(days=30))
    Detection.objects.filter(message_id=stranded).update(captured_at=midnight(later) + timedelta(hours=5))
    assert partition_of(stranded) == partitions.DEFAULT

    created = partitions.ensure(today=later, ahead=0, behind=0)

    assert created == [partitions.day_name(later)]
    assert partition_of(stranded) == partitions.day_name(later)
    assert Detection.objects.filter(message_id=stranded).count() == 1
    assert partitions.ensure(today=later, ahead=0, behind=0) == []  # made once


def test_retention_drops_whole_expired_days_and_clears_the_alerts_links(settings):
    settings.RETENTION_DETECTIONS_DAYS = 5
    device = DeviceFactory()
    old_day, kept_day = TODAY - timedelta(days=8), TODAY - timedelta(days=2)
    partitions.ensure(today=old_day, ahead=0, behind=0)
    old = ingest(device, "OLD1", midnight(old_day) + timedelta(hours=3))
    kept = ingest(device, "KEEP1", midnight(kept_day) + timedelta(hours=3))
    read = Detection.objects.get(message_id=old)
    alert = Alert.objects.create(watchlist=Watchlist.objects.create(name="w"), detection=read, device=device,
                                 plate="OLD1", matched="OLD1", captured_at=read.captured_at)  # fmt: skip

    purged = retention.purge_expired()

    assert partitions.day_name(old_day) in purged.partitions
    assert partitions.day_name(old_day) not in {p.name for p in partitions.partitions()}
    assert not Detection.objects.filter(message_id=old).exists()
    assert Detection.objects.filter(message_id=kept).exists()
    alert.refresh_from_db()
    assert alert.detection_id is None and alert.plate == "OLD1"  # the alert stays, with its own copy of the read


def test_a_search_bounded_in_time_reads_only_the_partitions_of_those_days():
    device = DeviceFactory()
    ingest(device, "AB123CD", midnight(TODAY) + timedelta(hours=1))
    since, until = midnight(TODAY), midnight(TODAY) + timedelta(hours=6)
    qs = search(Query(plate="AB123CD", match="exact", since=since, until=until))
    plan = qs.explain()
    assert partitions.day_name(TODAY) in plan
    assert partitions.day_name(TODAY - timedelta(days=1)) not in plan and partitions.DEFAULT not in plan
    assert qs.count() == 1


def test_the_command_lists_partitions_and_makes_days_ahead(capsys):
    call_command("detection_partitions", "--ahead", "5")
    out = capsys.readouterr().out
    assert partitions.day_name(TODAY + timedelta(days=5)) in out
    assert partitions.DEFAULT in out


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_migrating_an_unpartitioned_table_keeps_its_reads_in_place_and_ids_go_on():
    """The migration path: a table from before partitioning becomes the legacy partition, not a copy."""
    device = DeviceFactory()
    call_command("migrate", "detections", "0005", verbosity=0)
    try:
        assert not partitions.is_partitioned()
        before = [ingest(device, plate, midnight(TODAY) - timedelta(days=n))
                  for n, plate in enumerate(["KX1000", "MZ5555", "RT7777"], 1)]  # fmt: skip
        top_id = max(Detection.objects.values_list("id", flat=True))

        call_command("migrate", "detections", verbosity=0)

        assert partitions.is_partitioned()
        assert {partition_of(m) for m in before} == {partitions.LEGACY}
        after = ingest(device, "NEW1", midnight(TODAY) + timedelta(hours=1))
        assert partition_of(after) == partitions.day_name(TODAY)
        assert Detection.objects.get(message_id=after).id > top_id
        assert list(search(Query(plate="MZ5S55", match="fuzzy")).values_list("plate", flat=True)) == ["MZ5555"]
    finally:
        call_command("migrate", "detections", verbosity=0)
