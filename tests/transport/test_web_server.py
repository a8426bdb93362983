"""`manage.py serve`: Daphne leaves request bodies to Django, and reads none past HTTP_MAX_BODY_BYTES."""

from __future__ import annotations

import json
import socket
import sys

import pytest
import requests

from detections.models import Image
from tests.detections.pictures import picture
from tests.factories import envelope
from tests.realtime.conftest import start_server
from transport.models import RejectedMessage

pytestmark = pytest.mark.django_db(transaction=True)


SERVE = [sys.executable, "manage.py", "serve", "--no-mqtt", "--no-watch", "--port", "{port}"]


@pytest.fixture
def serve(tmp_path):
    server = start_server(tmp_path, SERVE, MEDIA_ROOT=str(tmp_path / "media"))
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


def _raw_exchange(server, head: bytes, body_parts: list[bytes] = ()) -> bytes:
    """Send a request's head and whatever of its body the server still reads; return all it answered."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for part in body_parts:
                sock.sendall(part)
        except OSError:  # the server closed the connection: it stopped reading, as it should
            pass
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


@pytest.fixture
def small_serve(tmp_path):
    server = start_server(tmp_path, SERVE, HTTP_MAX_BODY_BYTES=str(64 * 1024))
    yield server
    server.stop()


def test_a_body_announced_past_the_bound_is_refused_before_it_is_sent(small_serve):
    head = (b"POST /api/v1/ingest/batch/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000000\r\n\r\n")  # fmt: skip
    answer = _raw_exchange(small_serve, head)  # nothing of the 10 GB is sent: the answer comes anyway
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 413") and b"application/json" in status
    assert json.loads(body)["error"] == "too_large" and "10000000000" in json.loads(body)["detail"]


def test_a_chunked_body_is_cut_off_once_it_passes_the_bound(small_serve):
    head = (b"POST /api/v1/ingest/batch/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    chunk = b"%x\r\n%s\r\n" % (16 * 1024, b"x" * 16 * 1024)
    answer = _raw_exchange(small_serve, head, [chunk] * 64)  # 1 MiB offered, 64 KiB allowed
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["error"] == "too_large"


def test_a_body_within_the_bound_still_reaches_the_api(small_serve, device):
    env = json.dumps({"messages": [envelope(device.id)]}).encode()
    response = requests.post(f"{small_serve.http}/api/v1/ingest/batch/", data=env, timeout=10,
                             headers={"Content-Type": "application/json", "Authorization": f"Device {device.issued.key}"})  # fmt: skip
    assert response.status_code == 200 and response.json()["results"][0]["status"] == "accepted"
