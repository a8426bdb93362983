"""The run command without REDIS_URL (in-memory channel layer, Socket.IO without Redis) serves all of it."""

from __future__ import annotations

import asyncio

import pytest
import socketio
import websockets

from tests.factories import envelope

from .conftest import REPO, acks_for, dump, is_type, operator_headers, recv_frame

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_one_process_on_embedded_defaults_serves_cameras_dashboards_and_video(
    private_servers, make_device, token_for, operator_cookie
):
    server = private_servers([str(REPO / ".venv/bin/python"), "manage.py", "serve", "--port", "{port}"], REDIS_URL="")
    ws_cam, sio_cam = make_device(), make_device()
    env = envelope(ws_cam.id, protocol="websocket")
    pushes: asyncio.Queue = asyncio.Queue()

    async def scenario():
        headers = operator_headers(server, operator_cookie)
        async with websockets.connect(f"{server.ws}/ws/dashboard/", additional_headers=headers) as dash:
            client = socketio.AsyncClient(reconnection=False)
            client.on("video", pushes.put_nowait, namespace="/device")
            await client.connect(server.http, namespaces=["/device"], auth={"token": token_for(sio_cam)})
            sio_ack = await client.call("envelope", envelope(sio_cam.id, "health"), namespace="/device", timeout=10)
            async with websockets.connect(f"{server.ws}/ws/device/?token={token_for(ws_cam)}") as cam:
                await cam.send(dump(env))
                ws_ack = (await acks_for(cam, [env["message_id"]]))[env["message_id"]]
                event = await recv_frame(dash, lambda f: any(e["type"] == "detection" for e in f.get("events", [])))
                async with websockets.connect(f"{server.ws}/ws/video/{ws_cam.id}/", additional_headers=headers) as viewer:
                    start = await recv_frame(cam, is_type("video"))
                    await cam.send(b"\xff\xd8\xff\xe0frame\xff\xd9")
                    frame = await recv_frame(viewer)
                async with websockets.connect(f"{server.ws}/ws/video/{sio_cam.id}/", additional_headers=headers):
                    sio_start = await asyncio.wait_for(pushes.get(), 10)
            await client.disconnect()
            return sio_ack, ws_ack, event, start, frame, sio_start

    sio_ack, ws_ack, event, start, frame, sio_start = asyncio.run(scenario())
    assert sio_ack["status"] == ws_ack["status"] == "accepted"
    assert [e["message_id"] for e in event["events"] if e["type"] == "detection"] == [env["message_id"]]
    assert start["action"] == sio_start["action"] == "start"
    assert frame == b"\xff\xd8\xff\xe0frame\xff\xd9"
