"""Presence across processes, ping/pong latency, silent connections, and pushes to a device from anywhere."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from devices import presence
from devices.models import Device
from tests.factories import envelope
from transport import live

from .conftest import dump, in_thread, is_type, operator_headers, recv_frame, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_ping_pong_stores_the_round_trip_as_the_device_latency(servers, device, token_for):
    assert Device.objects.get(pk=device.pk).measured_latency_ms is None

    async def scenario():
        async with websockets.connect(f"{servers.a.ws}/ws/device/?token={token_for(device)}") as ws:
            ping = await recv_frame(ws, is_type("ping"))  # the servers ping every 0.5 s in these tests
            await asyncio.sleep(0.05)  # the camera takes a moment to answer: the round trip includes it
            await ws.send(dump({"type": "pong", "sent_at": ping["sent_at"]}))
            await asyncio.to_thread(
                wait_until, lambda: Device.objects.filter(pk=device.pk, measured_latency_ms__isnull=False).exists(),
                what="a stored latency",
            )  # fmt: skip

    try:
        asyncio.run(scenario())
    finally:
        from django.db import connections

        connections.close_all()
    device.refresh_from_db()
    assert 50 <= device.measured_latency_ms < 5000
    assert device.measured_latency_at is not None


def test_a_pong_for_a_ping_never_sent_measures_nothing(servers, device, token_for):
    async def scenario():
        async with websockets.connect(f"{servers.a.ws}/ws/device/?token={token_for(device)}") as ws:
            await ws.send(dump({"type": "pong", "sent_at": "2020-01-01T00:00:00+00:00"}))
            await ws.send(dump(envelope(device.id, protocol="websocket")))
            return await recv_frame(ws, is_type("ack"))

    assert asyncio.run(scenario())["status"] == "accepted"  # the pong was not taken for an envelope
    device.refresh_from_db()
    assert device.measured_latency_ms is None


def test_connections_are_known_across_processes_and_forgotten_when_closed(servers, device, token_for):
    async def scenario():
        async with websockets.connect(f"{servers.b.ws}/ws/device/?token={token_for(device)}") as ws:
            await recv_frame(ws, is_type("ping"))
            while_open = presence.transports_of(device.id)
        await asyncio.to_thread(wait_until, lambda: not presence.is_connected(device.id), what="presence to clear")
        return while_open

    assert asyncio.run(scenario()) == {"websocket"}


def test_a_silent_connection_is_closed_and_leaves_presence(private_servers, device, token_for, operator_cookie):
    server = private_servers(REALTIME_PING_INTERVAL_S="0.2", REALTIME_SILENT_TIMEOUT_S="1.0")

    async def scenario():
        headers = operator_headers(server, operator_cookie)
        async with websockets.connect(f"{server.ws}/ws/dashboard/", additional_headers=headers) as dash:
            url = f"{server.ws}/ws/device/?token={token_for(device)}"
            async with websockets.connect(url, ping_interval=None) as ws:
                assert presence.is_connected(device.id)
                started = time.monotonic()
                with pytest.raises(ConnectionClosed):
                    while True:  # read (so the socket is alive) but never answer
                        await asyncio.wait_for(ws.recv(), 10)
            left = await recv_frame(dash, lambda f: any(_left(e, device.id) for e in f.get("events", [])))
            return ws.close_code, time.monotonic() - started, [e for e in left["events"] if _left(e, device.id)][0]

    code, after, event = asyncio.run(scenario())
    assert code == 4408 and after < 10
    assert not presence.is_connected(device.id)
    assert (event["transport"], event["reason"]) == ("websocket", "silent")


def _left(event: dict, device_id: str) -> bool:
    return event["type"] == "device_status" and event["device_id"] == device_id and not event["online"]


def test_a_camera_that_answers_pings_stays_connected(private_servers, device, token_for):
    server = private_servers(REALTIME_PING_INTERVAL_S="0.2", REALTIME_SILENT_TIMEOUT_S="1.0")

    async def scenario():
        async with websockets.connect(f"{server.ws}/ws/device/?token={token_for(device)}") as ws:
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                ping = await recv_frame(ws, is_type("ping"))
                await ws.send(dump({"type": "pong", "sent_at": ping["sent_at"]}))
            await ws.send(dump(envelope(device.id, protocol="websocket")))
            return await recv_frame(ws, is_type("ack"))

    assert asyncio.run(scenario())["status"] == "accepted"


def test_push_to_device_reaches_a_websocket_camera_from_another_process(servers, device, make_device, token_for):
    offline = make_device()
    body = {"command": {"id": "00000000-0000-4000-8000-00000000c0de", "action": "reboot", "params": {}}}

    async def scenario():
        async with websockets.connect(f"{servers.a.ws}/ws/device/?token={token_for(device)}") as ws:
            await asyncio.to_thread(wait_until, lambda: presence.is_connected(device.id))
            delivered = await asyncio.to_thread(live.push_to_device, device.id, "command", body)
            config = await asyncio.to_thread(live.push_to_device, device.id, "config", {"version": 4, "values": {"fps": 5}})
            return delivered, config, await recv_frame(ws, is_type("command")), await recv_frame(ws, is_type("config"))

    delivered, config_delivered, command, config = asyncio.run(scenario())
    assert delivered and config_delivered
    assert command == {"type": "command", **body}
    assert config == {"type": "config", "version": 4, "values": {"fps": 5}}
    assert live.push_to_device(offline.id, "command", body) is False


def test_presence_entries_lapse_when_their_holder_stops_refreshing(settings):
    roster = presence.roster()

    async def scenario():
        await roster.ajoin("lpr:presence:test:lapse", "conn-1", 0.3)
        assert await roster.ajoin("lpr:presence:test:lapse", "conn-2", 5) == 2
        await asyncio.sleep(0.5)
        return await roster.amembers("lpr:presence:test:lapse"), await roster.aleave("lpr:presence:test:lapse", "conn-2")

    assert asyncio.run(scenario()) == (["conn-2"], 0)


def test_rotating_the_key_closes_open_connections_on_both_transports(servers, device, token_for):
    import socketio

    from devices.credentials import rotate_key

    async def scenario():
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(servers.b.http, namespaces=["/device"], auth={"token": token_for(device)},
                             transports=["websocket"])  # fmt: skip
        async with websockets.connect(f"{servers.a.ws}/ws/device/?token={token_for(device)}") as ws:
            await in_thread(rotate_key, device)
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            await asyncio.to_thread(wait_until, lambda: not client.connected, what="Socket.IO closed")
            await asyncio.to_thread(wait_until, lambda: not presence.is_connected(device.id), what="presence cleared")
            return ws.close_code

    assert asyncio.run(scenario()) == 4401
