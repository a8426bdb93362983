"""Device credentials: created once, stored sealed, rotated at once."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from devices.credentials import hash_key, payload_key
from devices.models import Device
from tests.factories import envelope

pytestmark = pytest.mark.django_db


def test_create_device_prints_credentials_once_and_stores_only_a_hash_of_the_key(capsys):
    call_command("create_device", "CAM001", "--name", "Gate 1", "--json")
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"device_id", "key", "payload_key"}
    device = Device.objects.get(pk="CAM001")
    assert device.name == "Gate 1"
    assert device.key_hash == hash_key(printed["key"])
    assert printed["key"] not in device.key_encrypted and printed["payload_key"] not in device.payload_key_encrypted
    assert payload_key(device) == printed["payload_key"].encode()

    response = Client().post("/api/v1/ingest/", json.dumps(envelope("CAM001")), content_type="application/json",
                             HTTP_AUTHORIZATION=f"Device {printed['key']}")  # fmt: skip
    assert response.status_code == 201


def test_create_device_refuses_an_id_unfit_for_mqtt_topics():
    with pytest.raises(CommandError, match="Cannot create"):
        call_command("create_device", "cam/+/#")


def test_admin_key_rotation_shows_the_new_key_once_and_revokes_the_old(device):
    admin = get_user_model().objects.create_superuser("root", "", "pw-for-admin-123")
    client = Client()
    client.force_login(admin)
    response = client.post(
        "/admin/devices/device/", {"action": "rotate_keys", "_selected_action": [device.id]}, follow=True
    )
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 1 and "New key" in shown[0]
    new_key = shown[0].split("Key: <code>")[1].split("</code>")[0]
    old = Client().post("/api/v1/ingest/", json.dumps(envelope(device.id)), content_type="application/json",
                        HTTP_AUTHORIZATION=f"Device {device.issued.key}")  # fmt: skip
    new = Client().post("/api/v1/ingest/", json.dumps(envelope(device.id)), content_type="application/json",
                        HTTP_AUTHORIZATION=f"Device {new_key}")  # fmt: skip
    assert (old.status_code, new.status_code) == (401, 201)


def test_admin_creating_a_device_issues_credentials(db):
    admin = get_user_model().objects.create_superuser("root", "", "pw-for-admin-123")
    client = Client()
    client.force_login(admin)
    response = client.post(
        "/admin/devices/device/add/",
        {"id": "GATE7", "name": "Gate 7", "active": "on", "desired_config_version": 0, "desired_config": "{}"},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]][0].startswith("Credentials for <b>GATE7</b>")
    assert Device.objects.get(pk="GATE7").key_hash
