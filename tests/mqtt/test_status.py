"""devices.status: the MQTT status topic's values, recorded only when they change."""

import pytest

from devices.models import Device
from devices.status import StatusError, parse_status, record_statuses

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("raw", [b"online", b" ONLINE\n", b'"online"', "online"])
def test_status_bodies_camera_firmware_sends_are_understood(raw):
    assert parse_status(raw) == "online"


@pytest.mark.parametrize("raw", [b"", b"maybe", b"{}"])
def test_other_status_bodies_are_refused(raw):
    with pytest.raises(StatusError):
        parse_status(raw)


def test_a_repeated_status_changes_nothing(make_device):
    first, second = make_device(), make_device()

    assert sorted(record_statuses({first.id: "online", second.id: "offline"})) == sorted([first.id, second.id])
    since = Device.objects.get(pk=first.pk).mqtt_status_at
    assert record_statuses({first.id: "online", second.id: "online"}) == [second.id]

    first.refresh_from_db()
    assert (first.mqtt_status, first.mqtt_status_at) == ("online", since)
    assert Device.objects.get(pk=second.pk).mqtt_status == "online"
