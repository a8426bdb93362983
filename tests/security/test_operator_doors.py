"""Who may do what in the operator API, the images and exports, and the Django admin: each door as a table row.

Expected statuses per role. A refused request (401/403) must change nothing.
"""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from detections.alert_models import Alert, Watchlist, WatchlistEntry, Webhook
from detections.models import Detection
from devices import commands
from devices.models import Command, Device
from lpr_server import tokens
from tests.detections.pictures import picture
from tests.factories import envelope

from .conftest import doors, make_person, outcomes

pytestmark = pytest.mark.django_db

J = "application/json"
# method, path, body (JSON unless bytes) | anonymous, plain, operator, staff
API = [
    ("GET", "/api/v1/detections/", None, 401, 403, 200, 200),
    ("GET", "/api/v1/detections/?format=csv", None, 401, 403, 200, 200),
    ("GET", "/api/v1/detections/{detection}/", None, 401, 403, 200, 200),
    ("GET", "/media/images/{image}/", None, 401, 403, 200, 200),
    ("GET", "/media/images/{image}/thumbnail/", None, 401, 403, 200, 200),
    ("GET", "/api/v1/devices/", None, 401, 403, 200, 200),
    ("GET", "/api/v1/devices/{device}/", None, 401, 403, 200, 200),
    ("GET", "/api/v1/devices/{device}/presence/", None, 401, 403, 200, 200),
    ("GET", "/api/v1/devices/{device}/commands/", None, 401, 403, 200, 200),
    ("POST", "/api/v1/devices/{device}/commands/", {"action": "ping"}, 401, 403, 201, 201),
    ("POST", "/api/v1/devices/{device}/config/", {"values": {"fps": 5}}, 401, 403, 403, 200),
    ("GET", "/api/v1/commands/{command}/", None, 401, 403, 200, 200),
    ("GET", "/api/v1/health/", None, 401, 403, 200, 200),
    ("GET", "/api/v1/stats/protocols/", None, 401, 403, 200, 200),
    ("GET", "/api/v1/stats/devices/", None, 401, 403, 200, 200),
    ("GET", "/api/v1/stats/traffic/", None, 401, 403, 200, 200),
    ("GET", "/api/v1/alerts/", None, 401, 403, 200, 200),
    ("POST", "/api/v1/alerts/{alert}/ack/", {"comment": "seen"}, 401, 403, 200, 200),
    ("GET", "/api/v1/watchlists/", None, 401, 403, 200, 200),
    ("GET", "/api/v1/watchlists/{watchlist}/entries/", None, 401, 403, 200, 200),
    ("GET", "/api/v1/watchlists/{watchlist}/export/", None, 401, 403, 200, 200),
    ("POST", "/api/v1/watchlists/", {"name": "new list"}, 401, 403, 403, 201),
    ("PATCH", "/api/v1/watchlists/{watchlist}/", {"description": "changed"}, 401, 403, 403, 200),
    ("DELETE", "/api/v1/watchlists/{watchlist}/", None, 401, 403, 403, 204),
    ("POST", "/api/v1/watchlists/{watchlist}/entries/", {"value": "ZZ999ZZ"}, 401, 403, 403, 201),
    ("DELETE", "/api/v1/watchlists/{watchlist}/entries/{entry}/", None, 401, 403, 403, 204),
    ("POST", "/api/v1/watchlists/{watchlist}/import/", b"value\nYY888YY\n", 401, 403, 403, 200),
    ("GET", "/api/v1/webhooks/", None, 401, 403, 403, 200),
    ("GET", "/api/v1/webhooks/{webhook}/", None, 401, 403, 403, 200),
    ("POST", "/api/v1/webhooks/", {"name": "h", "url": "https://example.com/h", "secret": "s"}, 401, 403, 403, 201),
    ("DELETE", "/api/v1/webhooks/{webhook}/", None, 401, 403, 403, 204),
]


@pytest.fixture
def scene(device, settings, tmp_path):
    """One of everything the operator API shows: a read with its image, a command, a watchlist hit, a webhook."""
    from conftest import CameraClient

    settings.MEDIA_ROOT = tmp_path
    camera = CameraClient(device)
    upload = SimpleUploadedFile("crop.jpg", picture())
    image_ref = camera.client.post("/api/v1/images/", {"image": upload}, **camera.auth).json()["image_ref"]
    read = envelope(device.id, payload={"plate": "AB123CD", "confidence": 0.9, "image_ref": image_ref})
    assert camera.ingest(read).status_code == 201
    detection = Detection.objects.get(device=device)
    watchlist = Watchlist.objects.create(name="stolen")
    entry = WatchlistEntry.objects.create(watchlist=watchlist, value="AB123CD")
    alert = Alert.objects.create(watchlist=watchlist, entry=entry, detection=detection, device=device, plate="AB123CD",
                                 matched="AB123CD", captured_at=detection.captured_at)  # fmt: skip
    command = commands.send(device.id, "ping", {}, 60)
    webhook = Webhook.objects.create(name="ops", url="https://example.com/hook", secret="hook-secret")
    return {"device": device.id, "detection": detection.id, "image": image_ref, "watchlist": watchlist.id,
            "entry": entry.id, "alert": alert.id, "command": command.id, "webhook": webhook.id}  # fmt: skip


def state() -> tuple:
    """What a refused request must leave as it was."""
    return (
        Command.objects.count(), list(Device.objects.values_list("desired_config_version", flat=True)),
        list(Watchlist.objects.values_list("name", "description")), WatchlistEntry.objects.count(),
        Webhook.objects.count(), list(Alert.objects.values_list("acknowledged_at", flat=True)),
    )  # fmt: skip


def token_client(role: str) -> Client:
    user = make_person(role)
    if user is None:
        return Client()
    return Client(HTTP_AUTHORIZATION=f"Token {tokens.issue(user)[1]}")


@pytest.mark.parametrize("method, path, body, expected", doors(API))
def test_operator_api_door(scene, method, path, body, expected):
    content_type = "text/csv" if isinstance(body, bytes) else J
    data = body if isinstance(body, bytes) or body is None else json.dumps(body)
    def attempt(role: str) -> int:
        before = state()
        response = token_client(role).generic(method, path.format(**scene), data or "", content_type=content_type)
        if response.status_code in (401, 403):
            assert state() == before, f"{role}: refused, yet something changed"
            if not path.startswith("/media/"):
                assert response.json()["error"] == ("unauthenticated" if response.status_code == 401 else "forbidden")
        return response.status_code

    assert outcomes(expected, attempt) == expected
