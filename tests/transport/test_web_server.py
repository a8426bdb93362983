"""`manage.py serve`: Daphne leaves request bodies to Django."""

from __future__ import annotations

import sys

import pytest
import requests

from detections.models import Image
from tests.detections.pictures import picture
from tests.realtime.conftest import start_server
from transport.models import RejectedMessage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def serve(tmp_path):
    server = start_server(
        tmp_path, [sys.executable, "manage.py", "serve", "--no-mqtt", "--no-watch", "--port", "{port}"],
        MEDIA_ROOT=str(tmp_path / "media"),
    )
    yield server
    server.stop()


def test_a_multipart_body_that_does_not_parse_is_answered_in_the_contracts_format(serve, device):
    # Twisted, parsing form bodies itself, answered this with an empty 400 before Django saw it.
    response = requests.post(f"{serve.http}/api/v1/images/", data=b"no parts here", timeout=10,
                             headers={"Content-Type": "multipart/form-data", "Authorization": f"Device {device.issued.key}"})  # fmt: skip
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.status_code == 400 and response.json()["error"] == "invalid"
    assert "boundary" in response.json()["detail"]
    refused = RejectedMessage.objects.get()  # recorded, as every refusal is
    assert refused.device_id == device.id and refused.error == "invalid"


def test_a_well_formed_upload_is_still_read_by_django(serve, device, tmp_path):
    response = requests.post(f"{serve.http}/api/v1/images/", files={"image": ("crop.jpg", picture(), "image/jpeg")},
                             headers={"Authorization": f"Device {device.issued.key}"}, timeout=10)  # fmt: skip
    assert response.status_code == 201, response.text
    assert Image.objects.filter(id=response.json()["image_ref"], device=device).exists()
    assert any((tmp_path / "media").rglob("*.jpg"))
