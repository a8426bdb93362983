"""WebSocket (/ws/device/) and Socket.IO (/device) with random and truncated frames, wrong types and huge frames.

Every text frame or `envelope` event gets its ack, in the contract's form;
every bad one is `rejected` and recorded; binary junk gets an error frame;
the connection stays open (a frame past the transport's own limit closes
it, and the camera reconnects); the database gains exactly what was acked
`accepted`.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
import socketio
import websockets
from django.utils import timezone
from websockets.exceptions import ConnectionClosed

from tests.factories import envelope
from transport.models import Message, RejectedMessage

from .conftest import still_answers
from .frames import KINDS, Frame, corpus, kinds_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MUST_FAIL = (set(KINDS) - {"wrong_type", "deep"}) | {"pinned"}
OVER_TRANSPORT_LIMIT = 1024 * 1024 + 1  # Daphne's WebSocket frame limit and the Engine.IO packet limit


def check_ack(ack: dict, frame: Frame) -> str:
    assert ack["type"] == "ack" and ack["status"] in ("accepted", "rejected"), (frame.kind, ack)
    if ack["status"] == "rejected":
        assert ack.get("error") and ack.get("detail"), ack
    assert frame.kind not in MUST_FAIL or ack["status"] == "rejected", (frame.kind, ack)
    assert not frame.valid or ack == {"type": "ack", "message_id": frame.message_id, "status": "accepted"}, ack
    return ack["status"]


def refusals_since(transport: str, start) -> int:
    return RejectedMessage.objects.filter(transport=transport, received_at__gte=start).count()


def stored(device) -> set[str]:
    return {str(i) for i in Message.objects.filter(device=device).values_list("message_id", flat=True)}


def test_websocket_answers_every_bad_frame_and_stays_open(server, fast_device, token_for, figures):
    device, rng = fast_device(), random.Random(21)
    # A pong is the answer to the server's ping, not an envelope: it gets no ack.
    frames = [f for f in corpus(rng, device.id, 200, "websocket") if f.body != b'{"type": "pong"}']
    junk = [rng.randbytes(rng.randrange(1, 3000)) for _ in range(20)]  # binary frames must each be a JPEG
    start, statuses, accepted = timezone.now(), {"accepted": 0, "rejected": 0}, set()

    async def scenario():
        url = f"{server.ws}/ws/device/?token={token_for(device)}"
        async with websockets.connect(url, max_size=None) as ws:
            for n, frame in enumerate(frames):
                await ws.send(frame.text)
                if n % 10 == 0 and junk:
                    await ws.send(junk.pop())
            acks, errors = [], 0
            while len(acks) < len(frames) or errors < 20:
                answer = json.loads(await asyncio.wait_for(ws.recv(), 15))
                if answer["type"] == "ack":
                    acks.append(answer)
                elif answer["type"] == "error":
                    assert answer["error"] == "unsupported_media_type" and answer["detail"]
                    errors += 1
            await ws.send("x" * OVER_TRANSPORT_LIMIT)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            too_big = ws.close_code
        async with websockets.connect(url) as ws:  # the camera reconnects; the server is still taking frames
            after = envelope(device.id, protocol="websocket")
            await ws.send(json.dumps(after))
            while (last := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "ack":
                pass
        return acks, errors, too_big, after["message_id"], last

    acks, errors, too_big, after_id, last = asyncio.run(scenario())
    for frame, ack in zip(frames, acks):  # acks come in frame order
        statuses[check_ack(ack, frame)] += 1
        if ack["status"] == "accepted":
            accepted.add(ack["message_id"])
    assert too_big in (1009, 1006)  # the frame limit is Daphne's: closed (1009, or reset before the client read it)
    assert last["status"] == "accepted"
    assert stored(device) == accepted | {after_id}
    assert refusals_since("websocket", start) == statuses["rejected"] + errors
    assert still_answers(server)
    figures.record("fuzz", "websocket", inputs=len(frames) + errors + 2, refused=statuses["rejected"] + errors + 1,
                   of_which_binary=errors, of_which_over_1_mib_closed=1, accepted=statuses["accepted"] + 1,
                   stored=len(stored(device)), kinds=kinds_of(frames))  # fmt: skip


def _as_event_data(frame: Frame, rng: random.Random):
    """What a Socket.IO client might emit for this frame: the text, the bytes, or the decoded JSON value."""
    choice = rng.randrange(3)
    if choice == 0:
        return frame.text
    if choice == 1 and not frame.valid:
        return frame.body
    try:
        value = json.loads(frame.body)
        socketio.packet.Packet.data_is_binary(value)  # the client itself recurses through what it sends
        return value
    except (ValueError, RecursionError):
        return frame.text


def test_socketio_answers_every_bad_event_and_stays_connected(server, fast_device, token_for, figures):
    device, rng = fast_device(), random.Random(22)
    frames = corpus(rng, device.id, 200, "socketio")
    data = [_as_event_data(f, rng) for f in frames]
    start, statuses, accepted, errors = timezone.now(), {"accepted": 0, "rejected": 0}, set(), []

    async def connect():
        client = socketio.AsyncClient(reconnection=False)
        client.on("error", errors.append, namespace="/device")
        await client.connect(server.http, namespaces=["/device"], auth={"token": token_for(device)},
                             transports=["websocket"])  # fmt: skip
        return client

    async def scenario():
        client = await connect()
        limit = asyncio.Semaphore(32)

        async def call(data):  # a tuple is several arguments, None none
            async with limit:
                return await client.call("envelope", data, namespace="/device", timeout=15)

        acks = await asyncio.gather(*(call(d if d is not None else (None,)) for d in data))
        odd = [await call(None), await call(("a", "b")), await call((None,))]  # no argument, two, a null
        for _ in range(5):
            await client.emit("frame", rng.choice(["text", {"a": 1}, b"\x00" + rng.randbytes(99), None]), namespace="/device")
        for _ in range(200):  # the error events come back before the connection is dropped below
            if len(errors) == 5:
                break
            await asyncio.sleep(0.05)
        await client.emit("envelope", "x" * OVER_TRANSPORT_LIMIT, namespace="/device")
        await asyncio.sleep(1.0)
        dropped = not client.connected
        if client.connected:
            await client.disconnect()
        client = await connect()
        after = envelope(device.id, protocol="socketio")
        last = await client.call("envelope", after, namespace="/device", timeout=10)
        await client.disconnect()
        return acks, odd, dropped, after["message_id"], last

    acks, odd, dropped, after_id, last = asyncio.run(scenario())
    for frame, ack in zip(frames, acks):
        statuses[check_ack(ack, frame)] += 1
        if ack["status"] == "accepted":
            accepted.add(ack["message_id"])
    assert [a["status"] for a in odd] == ["rejected"] * 3
    assert dropped and last["status"] == "accepted"
    assert stored(device) == accepted | {after_id}
    assert len(errors) == 5 and {e["error"] for e in errors} == {"unsupported_media_type"}
    assert refusals_since("socketio", start) == statuses["rejected"] + len(odd) + len(errors)
    assert still_answers(server)
    figures.record("fuzz", "socketio", inputs=len(frames) + len(odd) + len(errors) + 2,
                   refused=statuses["rejected"] + len(odd) + len(errors) + 1, of_which_frame_events=len(errors),
                   of_which_over_1_mib_disconnected=1, accepted=statuses["accepted"] + 1, stored=len(stored(device)),
                   kinds=kinds_of(frames))  # fmt: skip
