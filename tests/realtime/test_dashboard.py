"""`/ws/dashboard/`: committed events reach every operator's socket, whichever process took them, once and in order."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.factories import envelope
from transport import fanout, live

from .conftest import acks_for, dump, in_thread, is_type, operator_headers, recv_frame

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


async def next_frame(ws, timeout: float) -> dict:
    """The next events frame, answered as the dashboard page answers it (flow control)."""
    frame = await recv_frame(ws, is_type("events"), timeout)
    await ws.send(dump({"type": "next"}))
    return frame


async def collect_events(ws, until, timeout: float = 20.0) -> tuple[list[dict], int]:
    """Events from dashboard frames until `until(events)` holds; also how many frames carried them."""
    events, frames = [], 0
    while not until(events):
        frame = await next_frame(ws, timeout)
        frames += 1
        events.extend(frame["events"])
    return events, frames


def test_detections_through_one_server_reach_a_dashboard_on_the_other_once_and_in_order(
    servers, make_device, token_for, operator_cookie
):
    cams = [make_device(), make_device()]
    sent = {cam.id: [envelope(cam.id, protocol="websocket", sequence=i) for i in range(40)] for cam in cams}
    ids = {e["message_id"] for envs in sent.values() for e in envs}

    async def camera(cam):
        async with websockets.connect(f"{servers.a.ws}/ws/device/?token={token_for(cam)}") as ws:
            for env in sent[cam.id]:
                await ws.send(dump(env))
            await acks_for(ws, [e["message_id"] for e in sent[cam.id]])

    async def scenario():
        headers = operator_headers(servers.b, operator_cookie)
        async with websockets.connect(f"{servers.b.ws}/ws/dashboard/", additional_headers=headers) as dash:
            await asyncio.sleep(0.3)  # the dashboard has joined its group
            await asyncio.gather(*(camera(cam) for cam in cams))
            events, frames = await collect_events(
                dash, lambda evs: ids <= {e["message_id"] for e in evs if e["type"] == "detection"}
            )
            await asyncio.sleep(0.5)  # anything sent twice would arrive now
            try:
                while True:
                    events.extend((await next_frame(dash, timeout=0.3))["events"])
            except asyncio.TimeoutError:
                pass
            return events, frames

    events, frames = asyncio.run(scenario())
    detections = [e for e in events if e["type"] == "detection" and e["message_id"] in ids]
    assert len(detections) == len(ids)  # each exactly once
    for cam in cams:
        got = [e["message_id"] for e in detections if e["device_id"] == cam.id]
        assert got == [e["message_id"] for e in sent[cam.id]]  # in the order committed
    sample = detections[0]
    assert sample["plate"] == "AB123CD" and sample["plate_normalized"] == "AB123CD" and sample["via"] == "websocket"
    assert frames < len(detections)  # bursts were coalesced into frames carrying several events
    statuses = [(e["device_id"], e["online"]) for e in events if e["type"] == "device_status"]
    assert (cams[0].id, True) in statuses and (cams[0].id, False) in statuses


def test_health_reports_and_command_answers_are_streamed(servers, device, token_for, operator_cookie, camera):
    from devices.commands import issue

    command = issue(device, "capture")
    health = envelope(device.id, "health", protocol="rest")
    answer = envelope(device.id, "control", {"command_id": str(command.id), "status": "done"}, protocol="rest")

    async def scenario():
        headers = operator_headers(servers.a, operator_cookie)
        async with websockets.connect(f"{servers.a.ws}/ws/dashboard/", additional_headers=headers) as dash:
            await asyncio.sleep(0.3)
            # Ingested over REST in this test process: events still reach the dashboards (through Redis).
            for env in (health, answer):
                assert (await in_thread(camera.ingest, env)).status_code == 201
            return (await collect_events(dash, lambda evs: {"health", "command"} <= {e["type"] for e in evs}))[0]

    events = {e["type"]: e for e in asyncio.run(scenario())}
    assert events["health"]["message_id"] == health["message_id"] and events["health"]["cpu_percent"] == 12.5
    assert events["command"]["command_id"] == str(command.id) and events["command"]["state"] == "done"


def test_anonymous_dashboards_and_foreign_origins_are_refused(servers, operator_cookie):
    async def scenario():
        async with websockets.connect(f"{servers.a.ws}/ws/dashboard/", origin=servers.a.http) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            anonymous = ws.close_code
        foreign = {"Cookie": operator_cookie, "Origin": "https://evil.example"}
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(f"{servers.a.ws}/ws/dashboard/", additional_headers=foreign):
                pass
        return anonymous, refused.value.response.status_code

    assert asyncio.run(scenario()) == (4401, 403)


def test_bursts_leave_each_process_as_few_group_sends_in_order():
    flushed: list[list[int]] = []
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def flush(items):
        flushed.append(items)

    pacer = live.Pacer(flush, interval=0.1, loop=loop)
    writers = [threading.Thread(target=lambda k=k: [pacer.add([k * 1000 + i]) for i in range(500)]) for k in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    deadline = time.monotonic() + 5
    while sum(map(len, flushed)) < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    loop.call_soon_threadsafe(loop.stop)
    items = [i for batch in flushed for i in batch]
    assert sorted(items) == sorted(k * 1000 + i for k in range(4) for i in range(500))  # each once
    for k in range(4):  # each writer's items in the order it added them
        mine = [i for i in items if i // 1000 == k]
        assert mine == sorted(mine)
    assert len(flushed) <= 5  # 2,000 events in a burst: a handful of sends, not 2,000


def test_events_published_while_the_server_loop_takes_over_are_all_delivered(monkeypatch):
    # In a server, work published before the first connection (the in-process MQTT bridge) starts a
    # private loop; the first connection binds the server's loop and stops the private one.
    monkeypatch.setattr(live, "_loop", None)
    monkeypatch.setattr(live, "_loop_is_private", False)
    got: list[int] = []

    async def flush(items):
        got.extend(items)

    pacer = live.Pacer(flush, interval=0.05)
    pacer.add([1, 2])
    private = live.live_loop()
    server = asyncio.new_event_loop()
    threading.Thread(target=server.run_forever, daemon=True).start()
    pacer.add([3])
    live.bind_loop(server)
    pacer.add([4])
    deadline = time.monotonic() + 5
    while len(got) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.call_soon_threadsafe(server.stop)
    assert sorted(got) == [1, 2, 3, 4]
    assert live.live_loop() is server and not private.is_running()


def test_each_dashboard_gets_frames_less_often_as_more_share_the_process(monkeypatch):
    sinks: set = set()
    monkeypatch.setattr(fanout, "_sinks", sinks)

    def open_dashboards(n):
        sinks.clear()
        sinks.update(object() for _ in range(n))
        return live.frame_interval()

    few, hundred, thousand = open_dashboards(3), open_dashboards(100), open_dashboards(1000)

    assert few == live.FRAME_INTERVAL_S  # a control room's few screens: the shortest wait
    assert 100 / hundred == pytest.approx(live.DASHBOARD_FRAMES_PER_S)  # frames a second in all stay bounded
    assert 1000 / thousand == pytest.approx(live.DASHBOARD_FRAMES_PER_S)


def test_a_pacer_asks_a_function_interval_before_each_wait():
    flushed: list[float] = []
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    interval = {"s": 0.0}

    async def flush(items):
        flushed.append(loop.time())

    pacer = live.Pacer(flush, interval=lambda: interval["s"], loop=loop)
    pacer.add([1])
    _wait_for(lambda: len(flushed) == 1)
    interval["s"] = 0.3
    pacer.add([2])  # the slot after the first flush: 0.3 s after it
    _wait_for(lambda: len(flushed) == 2)
    loop.call_soon_threadsafe(loop.stop)
    assert flushed[1] - flushed[0] >= 0.29


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert condition()
