"""A camera's doors on REST: its key on every endpoint, and request signatures for devices that require them.

Each row is an endpoint, each column a credential; a refused request stores nothing and is recorded.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.test import Client
from django.test.client import encode_multipart

from detections.models import Detection, Image
from devices import commands
from devices.credentials import rotate_key
from devices.models import Command, HealthLog
from tests.detections.pictures import picture
from tests.factories import envelope
from transport import auth
from transport.models import Message, RejectedMessage

from .conftest import doors, outcomes

pytestmark = pytest.mark.django_db

BOUNDARY = "lprsecurityboundary"
HIKVISION = (b'<EventNotificationAlert xmlns="http://www.hikvision.com/ver20/XMLSchema"><eventType>ANPR</eventType>'
             b"<UUID>{uuid}</UUID><ANPR><licensePlate>PECT600</licensePlate><confidenceLevel>97</confidenceLevel>"
             b"</ANPR></EventNotificationAlert>")  # fmt: skip


def body_for(endpoint: str, device, command_id: str) -> tuple[bytes, str]:
    """A request body that the endpoint accepts from this device, and its content type."""
    if endpoint == "ingest":
        return json.dumps(envelope(device.id)).encode(), "application/json"
    if endpoint == "ingest/batch":
        return json.dumps({"messages": [envelope(device.id), envelope(device.id, "health")]}).encode(), "application/json"
    if endpoint == "images":
        return encode_multipart(BOUNDARY, {"image": _file()}), f"multipart/form-data; boundary={BOUNDARY}"
    if endpoint == "ack":
        return json.dumps({"command_id": command_id, "status": "done"}).encode(), "application/json"
    if endpoint == "openalpr":
        group = {"data_type": "alpr_group", "best_uuid": str(uuid.uuid4()), "best_plate_number": "AB123CD",
                 "best_confidence": 93, "epoch_start": int(time.time() * 1000)}  # fmt: skip
        return json.dumps(group).encode(), "application/json"
    if endpoint == "platerecognizer":
        hook = {"hook": {"event": "recognition"}, "data": {"camera_id": str(uuid.uuid4()),
                "results": [{"plate": "ab123cd", "score": 0.9}]}}  # fmt: skip
        return json.dumps(hook).encode(), "application/json"
    if endpoint == "hikvision":
        return HIKVISION.replace(b"{uuid}", str(uuid.uuid4()).encode()), "application/xml"
    return b"", ""


def _file():
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("crop.jpg", picture(size=(64, 48)))


ENDPOINTS = {  # name: (method, path)
    "ingest": ("POST", "/api/v1/ingest/"),
    "ingest/batch": ("POST", "/api/v1/ingest/batch/"),
    "images": ("POST", "/api/v1/images/"),
    "config": ("GET", "/api/v1/device/config/"),
    "commands": ("GET", "/api/v1/device/commands/"),
    "ack": ("POST", "/api/v1/device/commands/{command}/ack/"),
    "protocol": ("GET", "/api/v1/device/protocol/"),
    "token": ("POST", "/api/v1/device/token/"),
    "openalpr": ("POST", "/api/v1/compat/openalpr/"),
    "platerecognizer": ("POST", "/api/v1/compat/platerecognizer/"),
    "hikvision": ("POST", "/api/v1/compat/hikvision/"),
}
KEYS = ("good", "missing", "wrong", "other_scheme", "rotated_out", "deactivated")
COMPAT_KEYS = ("token_scheme", "query", "query_wrong")
OK = {"ingest": 201, "ingest/batch": 200, "images": 201, "config": 200, "commands": 200, "ack": 200, "protocol": 200,
      "token": 201, "openalpr": 201, "platerecognizer": 201, "hikvision": 201}  # fmt: skip
# endpoint | good, missing, wrong, other scheme (Bearer), the key before a rotation, a deactivated device's key
KEY_TABLE = [(name, "", OK[name], 401, 401, 401, 401, 403) for name in ENDPOINTS]
# compat endpoint | `Authorization: Token <key>`, `?key=<key>`, `?key=<wrong>`
COMPAT_TABLE = [(name, "", OK[name], OK[name], 401) for name in ("openalpr", "platerecognizer", "hikvision")]


def written() -> tuple:
    """Everything a camera's request can write (refusals apart)."""
    return (Message.objects.count(), Detection.objects.count(), HealthLog.objects.count(), Image.objects.count(),
            list(Command.objects.values_list("state", flat=True)))  # fmt: skip


def knock(endpoint: str, credential: str, device, other_device, command_id: str):
    """Send the endpoint's request with the credential named; returns the response."""
    method, path = ENDPOINTS[endpoint]
    path = path.format(command=command_id)
    key = device.issued.key
    if credential == "rotated_out":
        rotate_key(device)  # `key` is now the old one
    elif credential == "deactivated":
        device.active = False
        device.save(update_fields=["active"])
    headers = {
        "good": f"Device {key}", "rotated_out": f"Device {key}", "deactivated": f"Device {key}",
        "wrong": f"Device {other_device.issued.key[:-4]}xxxx", "other_scheme": f"Bearer {key}",
        "token_scheme": f"Token {key}", "missing": None, "query": None, "query_wrong": None,
    }[credential]  # fmt: skip
    if credential == "query":
        path += f"?key={key}"
    elif credential == "query_wrong":
        path += "?key=lpr_wrong"
    body, content_type = body_for(endpoint, device, command_id)
    extra = {"HTTP_AUTHORIZATION": headers} if headers else {}
    if method == "GET":
        return Client().get(path, **extra)
    return Client().generic(method, path, body, content_type=content_type, **extra)


@pytest.fixture
def pending_command(device, make_device):
    command = commands.send(device.id, "ping", {}, 300)
    commands.mark_sent([command], "rest")
    return str(command.id)


def _try_doors(endpoint, expected, device, other, command_id, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path

    def attempt(credential: str) -> int:
        before, refusals = written(), RejectedMessage.objects.count()
        response = knock(endpoint, credential, device, other, command_id)
        if response.status_code >= 400:
            assert written() == before, f"{credential}: refused, yet something was written"
            assert RejectedMessage.objects.count() == refusals + 1, f"{credential}: refusal not recorded"
            assert response.json()["error"] == {401: "unauthenticated", 403: "forbidden"}[response.status_code]
        else:
            assert written() != before or endpoint in ("config", "protocol", "token", "commands")
        return response.status_code

    return outcomes(expected, attempt)


@pytest.mark.parametrize("endpoint, _, expected", doors(KEY_TABLE, KEYS))
def test_device_key_door(endpoint, _, expected, device, make_device, pending_command, settings, tmp_path):
    assert _try_doors(endpoint, expected, device, make_device(), pending_command, settings, tmp_path) == expected


@pytest.mark.parametrize("endpoint, _, expected", doors(COMPAT_TABLE, COMPAT_KEYS))
def test_compat_key_door(endpoint, _, expected, device, make_device, pending_command, settings, tmp_path):
    assert _try_doors(endpoint, expected, device, make_device(), pending_command, settings, tmp_path) == expected


# --- request signatures ----------------------------------------------------------------------------------------

SIGNATURES = ("signed", "unsigned", "wrong_key", "stale", "future", "not_a_number", "body_altered", "rotated_out")
SIGNED_ENDPOINTS = ("ingest", "ingest/batch", "images", "config", "token", "ack", "openalpr", "hikvision")
# endpoint | correctly signed, no signature, signed with another key, X-Timestamp 301 s old, 302 s ahead,
#            X-Timestamp not a number, body changed after signing, signed with the key before a rotation.
# A GET has no body to alter (the signature covers the timestamp and the body only, as CONTRACT section 3 says).
SIGNATURE_TABLE = [(name, "", OK[name], 401, 401, 401, 401, 401, "n/a" if name == "config" else 401, 401)
                   for name in SIGNED_ENDPOINTS]  # fmt: skip


def signed_knock(endpoint: str, case: str, device, command_id: str):
    method, path = ENDPOINTS[endpoint]
    path = path.format(command=command_id)
    key = device.issued.key
    if case == "rotated_out":
        rotate_key(device)
    body, content_type = body_for(endpoint, device, command_id)
    now = int(time.time())
    ts = {"stale": now - 301, "future": now + 302}.get(case, now)  # now is truncated: +302 is > 300 s ahead
    signing_key = "lpr_" + "x" * 43 if case == "wrong_key" else key
    signature = "sha256=" + auth.sign(signing_key, str(ts), body if method == "POST" else b"")
    headers = {"HTTP_AUTHORIZATION": f"Device {key}", "HTTP_X_TIMESTAMP": str(ts), "HTTP_X_SIGNATURE": signature}
    if case == "unsigned":
        del headers["HTTP_X_TIMESTAMP"], headers["HTTP_X_SIGNATURE"]
    elif case == "not_a_number":
        headers["HTTP_X_TIMESTAMP"] = "yesterday"
    elif case == "body_altered":
        if method == "GET":
            return None
        altered = body.replace(b"AB123CD", b"ZZ999ZZ").replace(b"PECT600", b"ZZ999ZZ").replace(b"done", b"failed")
        body = altered.replace(b"JFIF", b"JFIG") if altered != body or endpoint != "images" else body + b"x"
        body = body if body else b"{}"
    if method == "GET":
        return Client().get(path, **headers)
    return Client().generic(method, path, body, content_type=content_type, **headers)


@pytest.mark.parametrize("endpoint, _, expected", doors(SIGNATURE_TABLE, SIGNATURES))
def test_request_signature_door(endpoint, _, expected, make_device, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    device = make_device(require_signature=True)
    command = commands.send(device.id, "ping", {}, 300)
    commands.mark_sent([command], "rest")
    def attempt(case: str) -> int | str:
        before = written()
        response = signed_knock(endpoint, case, device, str(command.id))
        if response is None:
            return "n/a"
        if response.status_code >= 400:
            assert written() == before, f"{case}: refused, yet something was written"
            assert response.json()["error"] == "unauthenticated"
            assert device.issued.key not in response.content.decode()
        return response.status_code

    assert outcomes(expected, attempt) == expected


@pytest.mark.parametrize("endpoint", ["ingest", "config", "openalpr"])
def test_a_wrong_method_is_refused_with_the_methods_allowed(endpoint, device):
    method, path = ENDPOINTS[endpoint]
    response = Client().generic("PUT", path, b"{}", HTTP_AUTHORIZATION=f"Device {device.issued.key}")
    assert (response.status_code, response.json()["error"], response["Allow"]) == (405, "method_not_allowed", method)
