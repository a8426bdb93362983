"""EdgeClient.upload_image against the real server: the image_ref it returns links a detection to the picture."""

from __future__ import annotations

import asyncio

import pytest

from edge import EdgeClient
from edge.simulate import FRAME_JPEG
from edge.transports import TransportError
from tests.realtime.conftest import start_server

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server(tmp_path):
    server = start_server(tmp_path, REDIS_URL="", DB_CONN_MAX_AGE="0", MEDIA_ROOT=str(tmp_path / "media"))
    yield server
    server.stop()


def test_an_uploaded_image_is_referenced_by_the_detection_sent_after_it(server, make_device, tmp_path):
    from detections.models import Detection, Image

    device = make_device()

    async def camera() -> tuple[str, str]:
        client = EdgeClient(server.http, device.id, device.issued.key, protocol="rest",
                            outbox_path=str(tmp_path / "outbox.sqlite"))  # fmt: skip
        await client.start()
        try:
            ref = await client.upload_image(FRAME_JPEG)
            message_id = await client.send_detection("AB123CD", 0.9, image_ref=ref)
            assert await client.flush(20), "the detection was not acked"
            with pytest.raises(TransportError) as refused:
                await client.upload_image(b"not a picture at all")
            assert refused.value.kind == "client_error"
            return ref, message_id
        finally:
            await client.stop()

    ref, message_id = asyncio.run(camera())
    image = Image.objects.get(pk=ref)
    assert image.device_id == device.id
    assert Detection.objects.get(message_id=message_id).image_id == image.pk


async def upload(server, device, key: str, sign: bool, tmp_path) -> str:
    client = EdgeClient(server.http, device.id, key, protocol="rest", sign_requests=sign,
                        outbox_path=str(tmp_path / f"outbox-{sign}.sqlite"))  # fmt: skip
    try:
        return await client.upload_image(FRAME_JPEG)
    finally:
        await client.stop()


def test_a_device_that_must_sign_can_upload(server, make_device, tmp_path):
    from detections.models import Image

    device = make_device(require_signature=True)
    ref = asyncio.run(upload(server, device, device.issued.key, True, tmp_path))
    assert Image.objects.get(pk=ref).device_id == device.id


@pytest.mark.parametrize("case", ["unsigned", "wrong key"])
def test_a_refused_image_upload_is_unauthenticated(server, make_device, tmp_path, case):
    device = make_device(require_signature=case == "unsigned")
    key = device.issued.key if case == "unsigned" else "not-the-key"
    with pytest.raises(TransportError) as refused:
        asyncio.run(upload(server, device, key, False, tmp_path))
    assert refused.value.kind == "auth", refused.value
