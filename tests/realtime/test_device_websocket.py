"""`/ws/device/` with the `websockets` library: acks after commit, duplicates, bad input, throttling, auth."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
import websockets
from django.conf import settings
from websockets.exceptions import ConnectionClosed

from detections.models import Detection
from devices.credentials import rotate_key
from tests.factories import envelope
from transport.auth import TOKEN_ALGORITHM, TOKEN_AUDIENCE
from transport.models import Message, RejectedMessage

from .conftest import JPEG, acks_for, dump, in_thread, is_type, recv_frame

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_envelopes_are_stored_and_acked_after_commit(servers, device, token_for):
    sent = [envelope(device.id, protocol="websocket", sequence=i) for i in range(5)]
    stored_when_acked = []

    async def scenario():
        async with websockets.connect(f"{servers.a.ws}/ws/device/?token={token_for(device)}") as ws:
            for env in sent:
                await ws.send(dump(env))
            for env in sent:
                ack = (await acks_for(ws, [env["message_id"]]))[env["message_id"]]
                # The ack promises the row is committed: another connection must see it at once.
                stored = await in_thread(Detection.objects.filter(message_id=env["message_id"]).exists)
                stored_when_acked.append((ack["status"], stored))

    asyncio.run(scenario())
    assert stored_when_acked == [("accepted", True)] * 5
    assert set(Message.objects.filter(device=device).values_list("received_via", flat=True)) == {"websocket"}


def test_token_in_the_authorization_header_is_accepted(servers, device, token_for):
    env = envelope(device.id, protocol="websocket")

    async def scenario():
        headers = {"Authorization": f"Bearer {token_for(device)}"}
        async with websockets.connect(f"{servers.b.ws}/ws/device/", additional_headers=headers) as ws:
            await ws.send(dump(env))
            return await acks_for(ws, [env["message_id"]])

    assert asyncio.run(scenario())[env["message_id"]]["status"] == "accepted"


def test_message_sent_over_rest_then_websocket_is_a_duplicate_stored_once(servers, device, camera, token_for):
    env = envelope(device.id, protocol="rest")
    assert camera.ingest(env).status_code == 201

    async def scenario():
        async with websockets.connect(f"{servers.a.ws}/ws/device/?token={token_for(device)}") as ws:
            await ws.send(dump({**env, "protocol": "websocket"}))
            return await acks_for(ws, [env["message_id"]])

    assert asyncio.run(scenario())[env["message_id"]]["status"] == "duplicate"
    assert Detection.objects.filter(message_id=env["message_id"]).count() == 1
    assert Message.objects.get(message_id=env["message_id"]).received_via == "rest"


def test_bad_frames_are_answered_and_recorded_and_the_connection_survives(servers, device, make_device, token_for):
    other = make_device()
    spoof = envelope(other.id, protocol="websocket")
    not_envelope = {"message_id": "5f0c6a4e-8d7b-4b6b-9a54-0d9c3a1c2b10", "hello": "world"}
    oversize = envelope(device.id, payload={"plate": "AB1", "confidence": 0.5, "note": "x" * (260 * 1024)})
    good = envelope(device.id, protocol="websocket")

    async def scenario():
        async with websockets.connect(f"{servers.a.ws}/ws/device/?token={token_for(device)}", max_size=2**21) as ws:
            answers = []
            for frame in ["this is not json", dump(not_envelope), dump(oversize), dump(spoof)]:
                await ws.send(frame)
                answers.append(await recv_frame(ws, is_type("ack")))
            await ws.send(b"GIF89a not a jpeg")
            answers.append(await recv_frame(ws, is_type("error")))
            await ws.send(dump(good))
            answers.append(await recv_frame(ws, is_type("ack")))
            return answers

    answers = asyncio.run(scenario())
    assert [(a.get("status"), a["error"] if "error" in a else None) for a in answers] == [
        ("rejected", "invalid"),
        ("rejected", "invalid"),
        ("rejected", "too_large"),
        ("rejected", "forbidden"),
        (None, "unsupported_media_type"),
        ("accepted", None),
    ]
    assert answers[1]["message_id"] == not_envelope["message_id"]
    assert answers[3]["message_id"] == spoof["message_id"]
    assert not Message.objects.filter(message_id=spoof["message_id"]).exists()
    assert not Detection.objects.filter(device=other).exists()
    errors = sorted(RejectedMessage.objects.filter(transport="websocket", device=device).values_list("error", flat=True))
    assert errors == ["forbidden", "invalid", "invalid", "too_large", "unsupported_media_type"]


def test_a_flood_past_the_device_rate_gets_throttled_acks_and_nothing_stored_for_them(servers, make_device, token_for):
    device = make_device(rate_limit_per_s=1.0)  # the servers allow a burst of 1000, then 1 message/s
    flood = [envelope(device.id, "health", protocol="websocket") for _ in range(1100)]

    async def scenario():
        async with websockets.connect(f"{servers.a.ws}/ws/device/?token={token_for(device)}") as ws:
            for env in flood:
                await ws.send(dump(env))
            return await acks_for(ws, [e["message_id"] for e in flood], timeout=60)

    acks = asyncio.run(scenario())
    throttled = [a for a in acks.values() if a["status"] == "throttled"]
    accepted = [a for a in acks.values() if a["status"] == "accepted"]
    # The bucket holds 1000 tokens and a batch takes all it needs or none: at most ~1000 get through.
    assert 0 < len(accepted) <= 1005 and len(throttled) >= 95
    assert all(a["retry_after"] >= 1 and a["error"] == "throttled" for a in throttled)
    assert Message.objects.filter(device=device).count() == len(accepted)
    assert not Message.objects.filter(message_id__in=[a["message_id"] for a in throttled]).exists()


def _expired_token(device) -> str:
    now = int(time.time())
    claims = {"sub": device.id, "aud": TOKEN_AUDIENCE, "iat": now - 100, "exp": now - 10, "kv": device.key_version}
    return jwt.encode(claims, settings.DEVICE_TOKEN_SECRET, algorithm=TOKEN_ALGORITHM)


def test_missing_wrong_expired_or_revoked_tokens_are_refused_with_4401(servers, device, token_for):
    revoked = token_for(device)
    rotate_key(device)
    tokens = {"missing": "", "wrong": "not-a-jwt", "expired": _expired_token(device), "revoked": revoked}

    async def close_code(token: str) -> int | None:
        async with websockets.connect(f"{servers.a.ws}/ws/device/?token={token}") as ws:
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except ConnectionClosed:
                pass
            return ws.close_code

    async def scenario():
        return {name: await close_code(token) for name, token in tokens.items()}

    assert asyncio.run(scenario()) == {"missing": 4401, "wrong": 4401, "expired": 4401, "revoked": 4401}
    assert RejectedMessage.objects.filter(transport="websocket", error="unauthenticated").count() >= 4


def test_binary_jpeg_frames_are_not_stored_or_rejected(servers, device, token_for):
    async def scenario():
        async with websockets.connect(f"{servers.a.ws}/ws/device/?token={token_for(device)}") as ws:
            await ws.send(JPEG)
            env = envelope(device.id, protocol="websocket")
            await ws.send(dump(env))
            return await recv_frame(ws, lambda f: isinstance(f, dict) and f.get("type") in ("ack", "error"))

    assert asyncio.run(scenario())["status"] == "accepted"  # the first answer is the envelope's: no error for video
    assert not RejectedMessage.objects.filter(device=device).exists()


def test_a_deactivated_device_is_refused_with_4403(servers, device, token_for):
    token = token_for(device)
    device.active = False
    device.save(update_fields=["active"])

    async def scenario():
        async with websockets.connect(f"{servers.b.ws}/ws/device/?token={token}") as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return ws.close_code

    assert asyncio.run(scenario()) == 4403
