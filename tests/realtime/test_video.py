"""Live video: a camera's JPEG frames relayed to operators, start/stop pushes, and bounded memory."""

from __future__ import annotations

import asyncio

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from devices import presence

from .conftest import JPEG, dump, is_type, operator_headers, recv_frame, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def jpeg(n: int, size: int = 2000) -> bytes:
    return JPEG[:4] + n.to_bytes(4, "big") + b"\x22" * size + b"\xff\xd9"


def test_a_viewer_on_one_server_watches_a_camera_on_the_other(servers, device, token_for, operator_cookie):
    async def scenario():
        async with websockets.connect(f"{servers.b.ws}/ws/device/?token={token_for(device)}") as cam:
            await asyncio.to_thread(wait_until, lambda: presence.is_connected(device.id))
            url = f"{servers.a.ws}/ws/video/{device.id}/"
            async with websockets.connect(url, additional_headers=operator_headers(servers.a, operator_cookie)) as viewer:
                start = await recv_frame(cam, is_type("video"))
                shown = []
                for n in range(5):
                    await cam.send(jpeg(n))
                    frame = await recv_frame(viewer, timeout=10)
                    shown.append(frame)
                    await viewer.send(dump({"type": "next"}))
            stop = await recv_frame(cam, is_type("video"))
            return start, shown, stop

    start, shown, stop = asyncio.run(scenario())
    assert start == {"type": "video", "action": "start", "max_fps": 10.0}
    assert shown == [jpeg(n) for n in range(5)]
    assert stop == {"type": "video", "action": "stop", "max_fps": 10.0}


def test_a_camera_connecting_while_watched_is_told_to_start(servers, device, token_for, operator_cookie):
    async def scenario():
        url = f"{servers.a.ws}/ws/video/{device.id}/"
        async with websockets.connect(url, additional_headers=operator_headers(servers.a, operator_cookie)):
            await asyncio.to_thread(wait_until, lambda: asyncio.run(presence.viewer_count(device.id)))
            async with websockets.connect(f"{servers.b.ws}/ws/device/?token={token_for(device)}") as cam:
                return await recv_frame(cam, is_type("video"))

    assert asyncio.run(scenario())["action"] == "start"


def test_a_viewer_that_does_not_read_does_not_grow_the_server_memory(servers, device, token_for, operator_cookie):
    frame_bytes, frames = 256 * 1024, 200  # 50 MiB of video through the server

    async def scenario():
        server = servers.a
        async with websockets.connect(f"{server.ws}/ws/device/?token={token_for(device)}", max_size=None) as cam:
            url = f"{server.ws}/ws/video/{device.id}/"
            headers = operator_headers(server, operator_cookie)
            async with websockets.connect(url, additional_headers=headers, max_size=None, max_queue=1) as viewer:
                await recv_frame(cam, is_type("video"))
                # Warm up, then measure: the viewer reads nothing from here on.
                await cam.send(jpeg(0, frame_bytes))
                await asyncio.sleep(0.5)
                before = server.rss_kib()
                for n in range(1, frames):
                    await cam.send(jpeg(n, frame_bytes))
                    await asyncio.sleep(0.015)  # a camera's pace (the relay would drop frames sent faster)
                await asyncio.sleep(1.0)
                after = server.rss_kib()
                # Still a live connection; once it reads again it skips to the newest frame.
                first = [await recv_frame(viewer) for _ in range(2)]  # the two sent before it stopped reading
                await viewer.send(dump({"type": "next"}))
                newest = await recv_frame(viewer)
                return before, after, first, newest

    before, after, first, newest = asyncio.run(scenario())
    assert after - before < 16 * 1024, f"server RSS grew by {(after - before) // 1024} MiB"
    assert first == [jpeg(0, frame_bytes), jpeg(1, frame_bytes)] and newest == jpeg(frames - 1, frame_bytes)


def test_anonymous_viewers_are_refused(servers, device):
    async def scenario():
        async with websockets.connect(f"{servers.a.ws}/ws/video/{device.id}/", origin=servers.a.http) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return ws.close_code

    assert asyncio.run(scenario()) == 4401
