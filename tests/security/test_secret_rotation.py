"""SECRETS_KEY can be rotated: with `new,old` both open what is stored and new secrets are sealed with `new`;
`manage.py reseal_secrets` seals everything with `new`, after which `old` can go."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client

from detections.alert_models import Webhook
from detections.models import Detection
from devices import credentials
from devices.models import Device
from tests.factories import DeviceFactory, envelope

pytestmark = [pytest.mark.django_db]

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def stored_secrets() -> list[str]:
    """Every sealed value as the database holds it (the webhook's read past its field, which would unseal it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT key_encrypted, payload_key_encrypted FROM devices_device ORDER BY id")
        devices = [value for row in cursor.fetchall() for value in row]
        cursor.execute("SELECT secret FROM detections_webhook ORDER BY id")
        return devices + [row[0] for row in cursor.fetchall()]


def opens(key: str, token: str) -> bool:
    try:
        Fernet(key.encode()).decrypt(token.encode())
        return True
    except InvalidToken:
        return False


def encrypted_read(device: Device, plate: str) -> dict:
    token = Fernet(device.issued.payload_key.encode()).encrypt(json.dumps({"plate": plate, "confidence": 0.8}).encode())
    env = envelope(device.id, payload=token.decode())
    env["metadata"]["encryption"] = "fernet"
    return env


def ingest(device: Device, body: dict) -> int:
    client = Client(HTTP_AUTHORIZATION=f"Device {device.issued.key}")
    return client.post("/api/v1/ingest/", json.dumps(body), content_type="application/json").status_code


def test_rotation_new_key_first_then_reseal_then_old_key_dropped(settings):
    settings.SECRETS_KEY = OLD
    before = DeviceFactory()
    webhook = Webhook.objects.create(name="ops", url="https://example.com/hook", secret="whsec-rotate-me")

    settings.SECRETS_KEY = f"{NEW},{OLD}"  # the rotation's first step: both keys, the new one first
    assert credentials.device_key(Device.objects.get(pk=before.pk)) == before.issued.key  # old seals still open
    during = DeviceFactory()
    assert opens(NEW, Device.objects.get(pk=during.pk).key_encrypted)  # new seals use the new key
    assert not opens(OLD, Device.objects.get(pk=during.pk).key_encrypted)
    assert ingest(before, encrypted_read(before, "ROT1")) == 201  # the payload key, sealed with OLD, still works

    out = StringIO()
    call_command("reseal_secrets", stdout=out)
    assert "resealed 2 device(s) and 1 webhook secret(s)" in out.getvalue()
    assert all(opens(NEW, value) and not opens(OLD, value) for value in stored_secrets())

    settings.SECRETS_KEY = NEW  # the old key dropped
    for device in (before, during):
        stored = Device.objects.get(pk=device.pk)
        assert credentials.device_key(stored) == device.issued.key
        assert credentials.payload_key(stored) == device.issued.payload_key.encode()
    assert Webhook.objects.get(pk=webhook.pk).secret == "whsec-rotate-me"
    assert ingest(before, encrypted_read(before, "ROT2")) == 201
    assert set(Detection.objects.values_list("plate_normalized", flat=True)) == {"ROT1", "ROT2"}


def test_reseal_without_the_old_key_changes_nothing_and_says_what_to_do(settings):
    settings.SECRETS_KEY = OLD
    device = DeviceFactory()
    webhook = Webhook.objects.create(name="ops", url="https://example.com/hook", secret="whsec-keep")
    sealed_before = stored_secrets()

    settings.SECRETS_KEY = NEW  # the old key dropped too early
    with pytest.raises(CommandError, match="no longer holds; nothing was changed. Add that key back"):
        call_command("reseal_secrets", stdout=StringIO())
    assert stored_secrets() == sealed_before

    settings.SECRETS_KEY = f"{NEW},{OLD}"
    assert credentials.device_key(Device.objects.get(pk=device.pk)) == device.issued.key
    assert Webhook.objects.get(pk=webhook.pk).secret == "whsec-keep"


@pytest.mark.parametrize("value", ["", "not-a-fernet-key", f"{NEW},short"])
def test_an_unusable_secrets_key_is_reported_with_what_to_do(settings, value):
    settings.SECRETS_KEY = value
    with pytest.raises(ImproperlyConfigured, match="SECRETS_KEY must be one Fernet key"):
        credentials.seal("anything")
    errors = [e for e in run_checks() if e.id == "devices.E001"]
    assert len(errors) == 1 and "Fernet.generate_key()" in errors[0].msg


def test_a_usable_secrets_key_passes_the_check(settings):
    settings.SECRETS_KEY = f"{NEW},{OLD}"
    assert [e for e in run_checks() if e.id == "devices.E001"] == []
