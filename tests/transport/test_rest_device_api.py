"""The rest of the camera-facing REST API: images, config, commands, protocol, token."""

import io
import threading
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from detections.models import Detection, Image
from devices import commands
from tests.factories import envelope
from transport import auth

pytestmark = pytest.mark.django_db


def _jpeg() -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (64, 32), "white").save(buf, "JPEG")
    return buf.getvalue()


def test_image_upload_returns_a_ref_a_detection_can_use(camera, device):
    response = camera.client.post("/api/v1/images/", {"image": SimpleUploadedFile("crop.jpg", _jpeg())}, **camera.auth)
    assert response.status_code == 201
    ref = response.json()["image_ref"]
    assert Image.objects.get(pk=ref).content_type == "image/jpeg"
    env = envelope(device.id, payload={"plate": "IMG1", "confidence": 0.9, "image_ref": ref})
    assert camera.ingest(env).status_code == 201
    assert str(Detection.objects.get(plate="IMG1").image_id) == ref


def test_detection_may_not_reference_another_devices_image(camera, device, make_device):
    other = make_device()
    other_camera_ref = Image.objects.create(device=other, file=SimpleUploadedFile("x.jpg", _jpeg()), content_type="image/jpeg", size=10).pk
    response = camera.ingest(envelope(device.id, payload={"plate": "X", "confidence": 0.5, "image_ref": str(other_camera_ref)}))
    assert (response.status_code, response.json()["field"]) == (400, "payload.image_ref")
    assert Detection.objects.count() == 0


@pytest.mark.parametrize(
    "content, status, code",
    [(b"GIF89a not allowed", 415, "unsupported_media_type"), (b"\xff\xd8\xff" + b"0" * (5 * 1024 * 1024), 413, "too_large")],
)
def test_image_that_is_not_jpeg_or_png_or_too_big_is_refused(camera, content, status, code):
    response = camera.client.post("/api/v1/images/", {"image": SimpleUploadedFile("x.bin", content)}, **camera.auth)
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert Image.objects.count() == 0


def test_device_config_serves_the_desired_configuration(camera, device):
    device.desired_config_version, device.desired_config = 4, {"fps": 12, "zones": [1, 2]}
    device.save()
    assert camera.get("/api/v1/device/config/").json() == {
        "version": 4, "values": {"fps": 12, "zones": [1, 2]}, "profile": "urban", "protocol_order": ["websocket", "rest", "mqtt"],
    }  # fmt: skip


def test_command_poll_hands_out_pending_commands_once_and_ack_moves_them(camera, device):
    command = commands.issue(device, "capture", {"resolution": "full"})
    first = camera.get("/api/v1/device/commands/", wait=0).json()["commands"]
    assert [(c["id"], c["action"], c["params"]) for c in first] == [(str(command.id), "capture", {"resolution": "full"})]
    command.refresh_from_db()
    assert command.state == "sent"

    ack = camera.post(f"/api/v1/device/commands/{command.id}/ack/", {"command_id": str(command.id), "status": "received"})
    assert ack.json() == {"command_id": str(command.id), "state": "received"}
    assert camera.get("/api/v1/device/commands/", wait=0).json()["commands"] == []
    camera.post(f"/api/v1/device/commands/{command.id}/ack/", {"command_id": str(command.id), "status": "done"})
    assert list(command.transitions.values_list("state", "transport")) == [
        ("queued", ""), ("sent", "rest"), ("received", "rest"), ("done", "rest"),
    ]  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_long_poll_returns_as_soon_as_a_command_is_issued(make_device):
    from conftest import CameraClient

    device = make_device()
    camera = CameraClient(device)
    threading.Timer(0.8, lambda: commands.issue(device, "ping")).start()
    started = time.monotonic()
    got = camera.get("/api/v1/device/commands/", wait=10).json()["commands"]
    assert [c["action"] for c in got] == ["ping"]
    assert time.monotonic() - started < 5


def test_expired_commands_are_not_handed_out(camera, device):
    commands.issue(device, "reboot", ttl_s=0)
    assert camera.get("/api/v1/device/commands/", wait=0).json()["commands"] == []


def test_ack_for_unknown_or_foreign_command_is_invalid(camera, make_device):
    foreign = commands.issue(make_device(), "reboot")
    for command_id in (foreign.id, "5b6f0d8e-1111-4a53-9a43-0d1f7c3e2b11"):
        response = camera.post(f"/api/v1/device/commands/{command_id}/ack/", {"command_id": str(command_id), "status": "done"})
        assert (response.status_code, response.json()["error"]) == (400, "invalid")
    foreign.refresh_from_db()
    assert foreign.state == "queued"


def test_wait_outside_0_to_30_is_invalid(camera):
    assert camera.get("/api/v1/device/commands/", wait=31).json()["field"] == "wait"


def test_protocol_recommendation_follows_the_latest_health(camera, device):
    assert camera.get("/api/v1/device/protocol/").json()["recommended"] == "websocket"  # no measurements yet
    poor = {"network": {"latency_ms": 900, "packet_loss": 0.08, "bandwidth_kbps": 100, "uptime_percent": 60}}
    camera.ingest(envelope(device.id, "health", payload=poor))
    answer = camera.get("/api/v1/device/protocol/").json()
    assert answer["recommended"] == "mqtt" and answer["score"] < 0.5
    assert set(answer["factors"]) == {"latency", "packet_loss", "bandwidth", "uptime"}


def test_token_is_a_jwt_for_this_device_revoked_by_key_rotation(camera, device):
    from devices.credentials import rotate_key

    response = camera.client.post("/api/v1/device/token/", **camera.auth)
    assert response.status_code == 201
    token = response.json()["token"]
    assert auth.authenticate_token(token).id == device.id
    rotate_key(device)
    with pytest.raises(auth.AuthError):
        auth.authenticate_token(token)
    assert camera.ingest(envelope(device.id)).status_code == 401  # the old key is revoked at once


def test_token_checks_audience_and_expiry(device, settings):
    import jwt

    forged = jwt.encode({"sub": device.id, "aud": "someone-else", "exp": time.time() + 60, "kv": 1}, settings.DEVICE_TOKEN_SECRET)
    expired = jwt.encode({"sub": device.id, "aud": auth.TOKEN_AUDIENCE, "exp": time.time() - 1, "kv": 1}, settings.DEVICE_TOKEN_SECRET)
    wrong_key = jwt.encode({"sub": device.id, "aud": auth.TOKEN_AUDIENCE, "exp": time.time() + 60, "kv": 1}, "not-our-secret-not-our-secret-32b")
    for token in (forged, expired, wrong_key, "garbage"):
        with pytest.raises(auth.AuthError):
            auth.authenticate_token(token)


def test_wrong_method_is_405_in_contract_form(camera):
    response = camera.get("/api/v1/ingest/")
    assert (response.status_code, response.json()["error"]) == (405, "method_not_allowed")
