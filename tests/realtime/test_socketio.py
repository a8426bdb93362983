"""Socket.IO namespace `/device` with python-socketio's client and with the JavaScript socket.io-client."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest
import socketio
import websockets

from detections.models import Detection
from tests.factories import envelope
from devices import presence
from transport import live
from transport.models import Message, RejectedMessage

from .conftest import REPO, dump, is_type, operator_headers, recv_frame, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


async def sio_camera(server, token: str, on: dict | None = None) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    for event, handler in (on or {}).items():
        client.on(event, handler, namespace="/device")
    await client.connect(server.http, namespaces=["/device"], auth={"token": token}, transports=["websocket"])
    return client


def test_envelopes_over_socketio_are_stored_and_acked_with_the_ack_object(servers, device, make_device, token_for):
    env = envelope(device.id, protocol="socketio")
    spoof = envelope(make_device().id, protocol="socketio")
    errors = []

    async def scenario():
        error_seen = asyncio.Event()
        client = await sio_camera(servers.b, token_for(device), {"error": lambda e: (errors.append(e), error_seen.set())})
        try:
            first = await client.call("envelope", env, namespace="/device", timeout=10)
            again = await client.call("envelope", json.dumps(env), namespace="/device", timeout=10)  # a JSON string too
            bad = await client.call("envelope", {"hello": "world"}, namespace="/device", timeout=10)
            spoofed = await client.call("envelope", spoof, namespace="/device", timeout=10)
            await client.emit("frame", b"not a jpeg", namespace="/device")
            last = await client.call("envelope", envelope(device.id, "health"), namespace="/device", timeout=10)
            await asyncio.wait_for(error_seen.wait(), 10)
            return first, again, bad, spoofed, last
        finally:
            await client.disconnect()

    first, again, bad, spoofed, last = asyncio.run(scenario())
    assert first == {"type": "ack", "message_id": env["message_id"], "status": "accepted"}
    assert again["status"] == "duplicate"
    assert (bad["status"], bad["error"]) == ("rejected", "invalid")
    assert (spoofed["status"], spoofed["error"]) == ("rejected", "forbidden")
    assert last["status"] == "accepted"
    assert errors and errors[0]["error"] == "unsupported_media_type"
    assert Detection.objects.filter(message_id=env["message_id"]).count() == 1
    assert Message.objects.get(message_id=env["message_id"]).received_via == "socketio"
    assert not Message.objects.filter(message_id=spoof["message_id"]).exists()
    assert set(RejectedMessage.objects.filter(transport="socketio").values_list("error", flat=True)) == {
        "invalid", "forbidden", "unsupported_media_type"}  # fmt: skip


def test_a_bad_token_is_refused_at_connect(servers):
    refusals = []

    async def scenario():
        client = socketio.AsyncClient(reconnection=False)
        client.on("connect_error", refusals.append, namespace="/device")
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(servers.a.http, namespaces=["/device"], auth={"token": "forged"},
                                 transports=["websocket"], wait_timeout=5)  # fmt: skip
        await client.disconnect()

    asyncio.run(scenario())
    assert refusals[0]["data"] == {"error": "unauthenticated", "detail": refusals[0]["message"], "close_code": 4401}


def test_the_javascript_client_gets_acks_and_pushes_from_another_process(servers, device, token_for):
    env = envelope(device.id, protocol="socketio")
    node = subprocess.Popen(["node", str(REPO / "tests/realtime/sio_client.js"), servers.a.http, token_for(device),
                             json.dumps(env)], stdout=subprocess.PIPE, text=True, cwd=REPO)  # fmt: skip
    try:
        first = json.loads(node.stdout.readline())
        assert first == {"ack": {"type": "ack", "message_id": env["message_id"], "status": "accepted"}}
        command = {"id": "c0ffee00-0000-4000-8000-000000000001", "action": "capture", "params": {}}
        # This test process is neither server: the push travels through Redis to the client's server.
        assert live.push_to_device(device.id, "command", {"command": command})
        pushed = json.loads(node.stdout.readline())
        assert pushed == {"command": {"type": "command", "command": command}}
        assert node.wait(timeout=10) == 0
    finally:
        node.kill()
    assert Detection.objects.filter(message_id=env["message_id"]).exists()


def test_a_socketio_camera_on_one_server_receives_a_push_emitted_from_the_other(servers, device, token_for, operator_cookie):
    received = asyncio.Queue()

    async def scenario():
        client = await sio_camera(servers.b, token_for(device), {"video": received.put_nowait})
        try:
            await asyncio.to_thread(wait_until, lambda: presence.is_connected(device.id), what="presence")
            # An operator opens the video on server A; A pushes `video start` to the camera connected to B.
            url = f"{servers.a.ws}/ws/video/{device.id}/"
            async with websockets.connect(url, additional_headers=operator_headers(servers.a, operator_cookie)):
                start = await asyncio.wait_for(received.get(), 10)
            stop = await asyncio.wait_for(received.get(), 10)
            return start, stop
        finally:
            await client.disconnect()

    start, stop = asyncio.run(scenario())
    assert (start["type"], start["action"]) == ("video", "start") and start["max_fps"] > 0
    assert stop["action"] == "stop"


def test_socketio_and_websocket_connections_are_both_known_to_presence(servers, device, token_for):
    async def scenario():
        client = await sio_camera(servers.b, token_for(device))
        async with websockets.connect(f"{servers.a.ws}/ws/device/?token={token_for(device)}") as ws:
            await ws.send(dump(envelope(device.id, protocol="websocket")))
            await recv_frame(ws, is_type("ack"))
            both = await asyncio.to_thread(presence.transports_of, device.id)
        await client.disconnect()
        await asyncio.to_thread(wait_until, lambda: not presence.is_connected(device.id), what="both gone")
        return both

    assert asyncio.run(scenario()) == {"websocket", "socketio"}


def test_a_socketio_camera_joining_watched_is_told_to_start_and_its_frames_reach_the_viewer(
    servers, device, token_for, operator_cookie
):
    received: asyncio.Queue = asyncio.Queue()
    image = b"\xff\xd8\xff\xe0" + b"socket.io frame" + b"\xff\xd9"

    async def scenario():
        url = f"{servers.a.ws}/ws/video/{device.id}/"
        async with websockets.connect(url, additional_headers=operator_headers(servers.a, operator_cookie)) as viewer:
            await asyncio.to_thread(wait_until, lambda: asyncio.run(presence.viewer_count(device.id)))
            client = await sio_camera(servers.b, token_for(device), {"video": received.put_nowait})
            try:
                start = await asyncio.wait_for(received.get(), 10)
                await client.emit("frame", image, namespace="/device")
                return start, await recv_frame(viewer)
            finally:
                await client.disconnect()

    start, frame = asyncio.run(scenario())
    assert start["action"] == "start" and frame == image
