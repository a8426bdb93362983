"""Images: stored with a thumbnail, linked to their detection, served to logged-in users only."""

import io

import PIL.Image
import pytest
from django.conf import settings
from django.test import Client

from detections.models import Detection, Image
from tests.factories import OperatorFactory, envelope

from .pictures import CORRUPT_JPEG, picture

pytestmark = pytest.mark.django_db


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def upload(camera, data: bytes, name: str = "crop.jpg"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return camera.client.post("/api/v1/images/", {"image": SimpleUploadedFile(name, data)}, **camera.auth)


def test_uploaded_image_is_stored_thumbnailed_linked_and_served_to_operators(camera, device, media):
    data = picture(size=(1600, 1200))
    response = upload(camera, data)
    assert response.status_code == 201
    image = Image.objects.get(id=response.json()["image_ref"])
    assert (image.width, image.height, image.content_type, image.size) == (1600, 1200, "image/jpeg", len(data))
    assert (media / image.file.name).read_bytes() == data
    with PIL.Image.open(media / image.thumbnail.name) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) == 320

    env = envelope(device.id, payload={"plate": "AB123CD", "confidence": 0.9, "image_ref": str(image.id)})
    assert camera.ingest(env).status_code == 201
    assert Detection.objects.get(message_id=env["message_id"]).image_id == image.id

    operator = Client()
    operator.force_login(OperatorFactory())
    listed = operator.get("/api/v1/detections/").json()["results"][0]
    served = operator.get(listed["image_url"])
    assert served.status_code == 200 and served["Content-Type"] == "image/jpeg"
    assert b"".join(served.streaming_content) == data
    thumb = operator.get(listed["thumbnail_url"])
    assert PIL.Image.open(io.BytesIO(b"".join(thumb.streaming_content))).size == (320, 240)


def test_operator_scripts_fetch_images_with_their_api_token(camera, media):
    from lpr_server import tokens

    image_id = upload(camera, picture()).json()["image_ref"]
    token = tokens.issue(OperatorFactory())[1]
    assert Client().get(f"/media/images/{image_id}/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    assert Client().get(f"/media/images/{image_id}/", HTTP_AUTHORIZATION="Token wrong").status_code == 401


def test_images_are_refused_to_anonymous_users(camera, media):
    image_id = upload(camera, picture()).json()["image_ref"]
    for path in (f"/media/images/{image_id}/", f"/media/images/{image_id}/thumbnail/"):
        api = Client().get(path)
        assert (api.status_code, api.json()["error"]) == (401, "unauthenticated")
        browser = Client().get(path, HTTP_ACCEPT="text/html")
        assert browser.status_code == 302 and browser["Location"].startswith(settings.LOGIN_URL)


@pytest.mark.parametrize(("data", "status", "code"), [
    (b"%PDF-1.4 not an image", 415, "unsupported_media_type"),
    (CORRUPT_JPEG, 400, "invalid"),
])  # fmt: skip
def test_bad_images_are_refused_and_nothing_is_stored(camera, media, data, status, code):
    response = upload(camera, data)
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert Image.objects.count() == 0 and not any(media.rglob("*.*"))


def test_an_image_over_5_mib_is_refused(camera, media, settings):
    settings.IMAGE_MAX_BYTES = 1000  # the limit is read per request; 5 MiB of upload is not needed to show it
    response = upload(camera, picture(size=(400, 400), color="white") + b"\x00" * 2000)
    assert (response.status_code, response.json()["error"]) == (413, "too_large")
    assert Image.objects.count() == 0
