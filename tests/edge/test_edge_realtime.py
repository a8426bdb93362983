"""WebSocket and Socket.IO adapters against the fake server's real endpoints."""
from __future__ import annotations


import pytest

from edge.envelope import build_envelope
from edge.transports import DeviceApi, DeviceIdentity, TransportError
from edge.transports.sio import SocketIOTransport
from edge.transports.ws import WebSocketTransport, ws_url
from tests.edge.edge_fakeserver import FakeServer
from tests.edge.edge_helpers import eventually, run


def env(device: str = "CAM1") -> dict:
    return build_envelope(device_id=device, data_type="detection", protocol="websocket",
                          payload={"plate": "AB123CD", "confidence": 0.9})


def test_ws_url_carries_the_token() -> None:
    assert ws_url("http://h:8000/", "a b") == "ws://h:8000/ws/device/?token=a%20b"
    assert ws_url("https://lpr.example.com", "t").startswith("wss://lpr.example.com/ws/device/")


def test_websocket_sends_frames_and_matches_acks() -> None:
    async def body() -> None:
        server = await FakeServer().start()
        ws = WebSocketTransport(DeviceIdentity(server.url, "CAM1", "key-1"), ack_timeout_s=2)
        await ws.connect()
        token_req = [r for r in server.requests if r["path"] == "/ws/device/"][0]
        assert token_req["query"]["token"] in server.tokens
        batch = [env(), env(), env(device="OTHER")]
        acks = await ws.send(batch)
        assert [(a["type"], a["message_id"], a["status"]) for a in acks] == [
            ("ack", batch[0]["message_id"], "accepted"), ("ack", batch[1]["message_id"],
                                                          "accepted"),
            ("ack", batch[2]["message_id"], "rejected")]
        assert server.stored[batch[0]["message_id"]] == batch[0]
        assert [a["status"] for a in await ws.send(batch[:1])] == ["duplicate"]
        await ws.close()
        await server.stop()
    run(body())


def test_websocket_answers_ping_and_forwards_pushes() -> None:
    async def body() -> None:
        server = await FakeServer().start()
        pushes: list = []
        ws = WebSocketTransport(DeviceIdentity(server.url, "CAM1", "key-1"), pushes.append)
        await ws.connect()
        await eventually(lambda: server.ws_clients)
        await server.push_ws({"type": "ping", "sent_at": "2026-11-26T10:30:00.000Z"})
        await eventually(lambda: server.pongs)
        assert server.pongs == [{"type": "pong", "sent_at": "2026-11-26T10:30:00.000Z"}]
        for msg in ({"type": "command", "command": {"id": 1, "action": "ping"}},
                    {"type": "config", "version": 2, "values": {}},
                    {"type": "protocol", "recommended": "rest", "score": 0.6},
                    {"type": "video", "action": "start", "max_fps": 2}):
            await server.push_ws(msg)
        await eventually(lambda: len(pushes) == 4)
        assert [p["type"] for p in pushes] == ["command", "config", "protocol", "video"]
        await ws.send_frame(b"\xff\xd8jpeg")
        await eventually(lambda: server.frames == [b"\xff\xd8jpeg"])
        await ws.close()
        await server.stop()
    run(body())


def test_websocket_throttled_ack_carries_retry_after() -> None:
    async def body() -> None:
        server = await FakeServer(retry_after=3).start()
        ws = WebSocketTransport(DeviceIdentity(server.url, "CAM1", "key-1"))
        await ws.connect()
        server.mode = "throttle"
        e = env()
        (ack,) = await ws.send([e])
        assert ack == {"type": "ack", "message_id": e["message_id"], "status": "throttled",
                       "retry_after": 3}
        await ws.close()
        await server.stop()
    run(body())


def test_websocket_4401_fetches_a_new_token_and_resends() -> None:
    async def body() -> None:
        server = await FakeServer().start()
        api = DeviceApi(DeviceIdentity(server.url, "CAM1", "key-1"))
        ws = WebSocketTransport(api.device, api=api, ack_timeout_s=2)
        await ws.connect()
        first = api._token
        server.tokens.pop(first)  # the token expires server side ...
        for client in list(server.ws_clients):
            await client.close(code=4401, message=b"expired")  # ... and the server says so
        await eventually(lambda: not ws.connected)
        assert ws.close_code == 4401
        e = env()
        (ack,) = await ws.send([e])
        assert ack["status"] == "accepted" and api._token != first
        await ws.close()
        await api.close()
        await server.stop()
    run(body())


def test_websocket_connection_lost_fails_pending_sends() -> None:
    async def body() -> None:
        server = await FakeServer().start()
        ws = WebSocketTransport(DeviceIdentity(server.url, "CAM1", "key-1"))
        await ws.connect()
        await server.stop()
        await eventually(lambda: not ws.connected)
        with pytest.raises(TransportError) as err:
            await ws.send([env()])
        assert err.value.kind == "connection_lost"
        await ws.close()
    run(body())


def test_socketio_emits_envelope_and_gets_the_ack_object() -> None:
    async def body() -> None:
        server = await FakeServer().start()
        pushes: list = []
        sio = SocketIOTransport(DeviceIdentity(server.url, "CAM1", "key-1"), pushes.append)
        await sio.connect()
        batch = [env(), env()]
        acks = await sio.send(batch)
        assert [(a["message_id"], a["status"]) for a in acks] == [
            (batch[0]["message_id"], "accepted"), (batch[1]["message_id"], "accepted")]
        assert [v for v, _, _ in server.received] == ["socketio", "socketio"]
        await server.sio.emit("command", {"id": 5, "action": "ping"}, namespace="/device")
        await server.sio.emit("protocol", {"recommended": "mqtt", "score": 0.2},
                              namespace="/device")
        await eventually(lambda: len(pushes) == 2)
        assert pushes[0] == {"type": "command", "command": {"id": 5, "action": "ping"}}
        assert pushes[1] == {"type": "protocol", "recommended": "mqtt", "score": 0.2}
        await sio.send_frame(b"\xff\xd8")
        await eventually(lambda: server.frames == [b"\xff\xd8"])
        await sio.close()
        await server.stop()
    run(body())


def test_socketio_refused_token_is_a_connect_failure() -> None:
    async def body() -> None:
        server = await FakeServer().start()
        sio = SocketIOTransport(DeviceIdentity(server.url, "CAM1", "key-1"), open_timeout_s=2)
        server.refuse_realtime = True
        with pytest.raises(TransportError) as err:
            await sio.connect()
        assert err.value.kind in ("connect_failed", "auth")
        assert server.tokens_issued == 2  # retried once with a fresh token
        await sio.close()
        await server.stop()
    run(body())
