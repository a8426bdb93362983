"""Retention: exactly what is past its age goes, in batches; the rest stays."""

from datetime import timedelta

import pytest
from django.utils import timezone

from detections import images, retention, tasks
from detections.models import Detection, Image, Passage
from devices.models import HealthLog
from tests.factories import DeviceFactory, envelope
from transport import pipeline

from .helpers import T0, ingest
from .pictures import picture

pytestmark = pytest.mark.django_db

NOW = T0  # a fixed "now" in the past, so every read is a valid camera time


@pytest.fixture
def ages(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.RETENTION_DETECTIONS_DAYS, settings.RETENTION_IMAGES_DAYS, settings.RETENTION_HEALTH_DAYS = 90, 30, 7
    return tmp_path


def _health(device, at):
    env = envelope(device.id, "health", payload={"cpu_percent": 5}, timestamp=at.isoformat())
    assert pipeline.ingest(env, device, "rest").status == "accepted"
    return env["message_id"]


def _image(device, uploaded_at):
    image = images.store(device, images.check(picture(size=(64, 48))))
    Image.objects.filter(id=image.id).update(uploaded_at=uploaded_at)
    return image


def test_exactly_what_is_past_its_age_is_removed(ages, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    second = timedelta(seconds=1)
    day90, day30, day7 = NOW - timedelta(days=90), NOW - timedelta(days=30), NOW - timedelta(days=7)
    for n in range(5):
        ingest(device, f"OLD{n}", day90 - second - timedelta(minutes=n))
    kept = [ingest(device, "KEEP1", day90 + second), ingest(device, "KEEP2", NOW - timedelta(days=1))]
    old_image, new_image = _image(device, day30 - second), _image(device, day30 + second)
    Detection.objects.filter(message_id=kept[0]).update(image=old_image)
    old_health, new_health = _health(device, day7 - second), _health(device, day7 + second)

    with django_capture_on_commit_callbacks(execute=True):  # files are removed once the delete is committed
        purged = retention.purge_expired(now=NOW, batch=2)  # small batches: the loop must go round

    assert set(Detection.objects.values_list("plate", flat=True)) == {"KEEP1", "KEEP2"}
    assert (purged.detections, purged.passages, purged.images, purged.health_logs) == (5, 5, 1, 1)
    assert set(Passage.objects.values_list("plate_normalized", flat=True)) == {"KEEP1", "KEEP2"}
    assert list(Image.objects.values_list("id", flat=True)) == [new_image.id]
    assert not (ages / old_image.file.name).exists() and not (ages / old_image.thumbnail.name).exists()
    assert (ages / new_image.file.name).exists()
    assert Detection.objects.get(message_id=kept[0]).image_id is None  # the read stays, its picture is gone
    assert [str(m) for m in HealthLog.objects.values_list("message_id", flat=True)] == [new_health]
    assert old_health


def test_the_celery_task_purges_by_the_current_time(ages):
    device = DeviceFactory()
    now = timezone.now()
    ingest(device, "OLD", now - timedelta(days=90, minutes=1))
    ingest(device, "NEW", now - timedelta(days=89, hours=23))
    tasks.purge_expired.apply()
    assert list(Detection.objects.values_list("plate", flat=True)) == ["NEW"]


def test_zero_days_keeps_everything(ages, settings):
    settings.RETENTION_DETECTIONS_DAYS = 0
    device = DeviceFactory()
    ingest(device, "ANCIENT", NOW - timedelta(days=3650))
    assert retention.purge_expired(now=NOW).detections == 0
    assert Detection.objects.count() == 1
