"""A small fake of the server's device side (REST, WebSocket, Socket.IO) for the edge tests.

It checks the contract's wire shapes as it goes and records what it got, so
tests can assert on exact requests. Not a server: no database, one process.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp import WSMsgType, web

ENVELOPE_FIELDS = {"message_id", "timestamp", "protocol", "edge_device_id", "data_type",
                   "payload", "metadata"}


@dataclass
class FakeServer:
    keys: dict[str, str] = field(default_factory=lambda: {"CAM1": "key-1"})
    mode: str = "ok"  # ok | throttle | unavailable | error | slow
    retry_after: int = 2
    token_lifetime: int = 300
    recommended: dict[str, Any] = field(
        default_factory=lambda: {"recommended": "websocket", "score": 0.95, "factors": {}})
    desired_config: dict[str, Any] = field(default_factory=lambda: {"version": 0, "values": {}})
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: list[tuple[str, str, str]] = field(default_factory=list)  # via, message_id, status
    requests: list[dict[str, Any]] = field(default_factory=list)
    pongs: list[dict[str, Any]] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    command_acks: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    tokens_issued: int = 0
    refuse_realtime: bool = False  # every WebSocket / Socket.IO token is refused
    ws_clients: list[web.WebSocketResponse] = field(default_factory=list)
    port: int = 0

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> "FakeServer":
        app = web.Application(middlewares=[self._record])
        r = app.router
        r.add_post("/api/v1/device/token/", self.token)
        r.add_post("/api/v1/ingest/", self.ingest)
        r.add_post("/api/v1/ingest/batch/", self.ingest_batch)
        r.add_get("/api/v1/device/commands/", self.poll_commands)
        r.add_post("/api/v1/device/commands/{id}/ack/", self.ack_command)
        r.add_get("/api/v1/device/config/", self.config)
        r.add_get("/api/v1/device/protocol/", self.protocol)
        r.add_get("/ws/device/", self.websocket)
        self.sio = socketio.AsyncServer(async_mode="aiohttp")
        self.sio.attach(app, socketio_path="socket.io")
        self.sio.on("connect", self.sio_connect, namespace="/device")
        self.sio.on("envelope", self.sio_envelope, namespace="/device")
        self.sio.on("frame", self.sio_frame, namespace="/device")
        self._commands_changed = asyncio.Event()
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        for ws in list(self.ws_clients):
            await ws.close()
        await self.runner.cleanup()

    # -- helpers -------------------------------------------------------------
    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read() if request.can_read_body else b""
        self.requests.append({"method": request.method, "path": request.path,
                              "query": dict(request.query), "headers": dict(request.headers),
                              "body": body})
        return await handler(request)

    def device_of(self, request: web.Request) -> str | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Device":
            return None
        return next((d for d, k in self.keys.items() if k == key), None)

    def _auth(self, request: web.Request) -> str:
        device = self.device_of(request)
        if device is None:
            raise web.HTTPUnauthorized(text=json.dumps(
                {"error": "unauthenticated", "detail": "bad key"}), content_type="application/json")
        return device

    def store(self, envelope: Any, device: str, via: str) -> dict[str, Any]:
        if not isinstance(envelope, dict) or not ENVELOPE_FIELDS <= set(envelope):
            mid = envelope.get("message_id") if isinstance(envelope, dict) else None
            return {"message_id": mid, "status": "rejected", "error": "invalid"}
        mid = envelope["message_id"]
        if envelope["edge_device_id"] != device:
            status = "rejected"
        elif mid in self.stored:
            status = "duplicate"
        else:
            self.stored[mid] = envelope
            status = "accepted"
        self.received.append((via, mid, status))
        ack = {"message_id": mid, "status": status}
        if status == "rejected":
            ack["error"] = "forbidden"
        return ack

    def add_command(self, command: dict[str, Any]) -> None:
        self.commands.append(command)
        self._commands_changed.set()

    async def push_ws(self, message: dict[str, Any]) -> None:
        for ws in list(self.ws_clients):
            await ws.send_str(json.dumps(message))

    # -- REST ----------------------------------------------------------------
    async def token(self, request: web.Request) -> web.Response:
        device = self._auth(request)
        self.tokens_issued += 1
        token = f"tok-{device}-{self.tokens_issued}"
        self.tokens[token] = device
        return web.json_response({"token": token, "expires_in": self.token_lifetime})

    def _failure(self) -> web.Response | None:
        if self.mode == "throttle":
            return web.json_response({"error": "throttled", "detail": "slow down"}, status=429,
                                     headers={"Retry-After": str(self.retry_after)})
        if self.mode == "unavailable":
            return web.json_response({"error": "unavailable", "detail": "db down"}, status=503,
                                     headers={"Retry-After": str(self.retry_after)})
        if self.mode == "error":
            return web.json_response({"error": "server_error", "detail": "boom"}, status=500)
        return None

    async def ingest(self, request: web.Request) -> web.Response:
        device = self._auth(request)
        if self.mode == "slow":
            await asyncio.sleep(30)
        failure = self._failure()
        if failure is not None:
            return failure
        ack = self.store(await request.json(), device, "rest")
        if ack["status"] == "rejected":
            return web.json_response({"error": ack["error"], "detail": "no"}, status=403)
        code = 201 if ack["status"] == "accepted" else 200
        return web.json_response(ack, status=code)

    async def ingest_batch(self, request: web.Request) -> web.Response:
        device = self._auth(request)
        if self.mode == "slow":
            await asyncio.sleep(30)
        failure = self._failure()
        if failure is not None:
            return failure
        body = await request.json()
        results = [self.store(e, device, "rest") for e in body["messages"]]
        return web.json_response({"results": results})

    async def poll_commands(self, request: web.Request) -> web.Response:
        self._auth(request)
        wait = float(request.query.get("wait", "0"))
        if not self.commands and wait:
            self._commands_changed.clear()
            try:
                await asyncio.wait_for(self._commands_changed.wait(), wait)
            except asyncio.TimeoutError:
                pass
        out, self.commands = self.commands, []
        return web.json_response(out)

    async def ack_command(self, request: web.Request) -> web.Response:
        self._auth(request)
        self.command_acks.append({"id": request.match_info["id"], **await request.json()})
        return web.json_response({"ok": True})

    async def config(self, request: web.Request) -> web.Response:
        self._auth(request)
        return web.json_response(self.desired_config)

    async def protocol(self, request: web.Request) -> web.Response:
        self._auth(request)
        return web.json_response(self.recommended)

    # -- WebSocket -----------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        device = self.tokens.get(request.query.get("token", ""))
        if device is None or self.refuse_realtime:
            await ws.close(code=4401, message=b"bad token")
            return ws
        self.ws_clients.append(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    self.frames.append(msg.data)
                    continue
                data = json.loads(msg.data)
                if data.get("type") == "pong":
                    self.pongs.append(data)
                    continue
                if self.mode == "throttle":
                    await ws.send_str(json.dumps({"type": "ack", "message_id": data.get(
                        "message_id"), "status": "throttled", "retry_after": self.retry_after}))
                    continue
                await ws.send_str(json.dumps({"type": "ack", **self.store(data, device, "ws")}))
        finally:
            self.ws_clients.remove(ws)
        return ws

    # -- Socket.IO -----------------------------------------------------------
    async def sio_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        device = self.tokens.get((auth or {}).get("token", ""))
        if device is None or self.refuse_realtime:
            raise socketio.exceptions.ConnectionRefusedError("unauthenticated")
        await self.sio.save_session(sid, {"device": device}, namespace="/device")

    async def sio_envelope(self, sid: str, data: Any) -> dict[str, Any]:
        session = await self.sio.get_session(sid, namespace="/device")
        return {"type": "ack", **self.store(data, session["device"], "socketio")}

    async def sio_frame(self, sid: str, data: bytes) -> None:
        self.frames.append(data)


class FakeMqttBridge:
    """Stands in for the server's MQTT bridge on the real Mosquitto: acks ``up/#`` on ``down/ack``."""

    def __init__(self, server: FakeServer, devices: list[str], host: str = "127.0.0.1",
                 port: int = 1883) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.server = server
        # Only our own devices: the shared broker also carries other test suites' traffic.
        self.devices = list(devices)
        self.topics: list[str] = []
        self.silent = False  # stop acking, like a bridge whose database is down
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bridge-{id(self)}")
        self.client.on_message = self._on_message
        self._host, self._port = host, port
        self._subscribed = asyncio.Event()

    async def start(self) -> "FakeMqttBridge":
        self.loop = asyncio.get_running_loop()
        self.client.on_subscribe = lambda *a: self.loop.call_soon_threadsafe(self._subscribed.set)
        self.client.connect(self._host, self._port)
        self.client.subscribe([(f"lpr/v1/devices/{d}/up/#", 1) for d in self.devices])
        self.client.loop_start()
        await asyncio.wait_for(self._subscribed.wait(), 5)
        return self

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        self.loop.call_soon_threadsafe(self._handle, msg.topic, bytes(msg.payload))

    def _handle(self, topic: str, payload: bytes) -> None:
        self.topics.append(topic)
        if self.silent:
            return
        device = topic.split("/")[3]
        try:
            body = json.loads(payload)
        except ValueError:
            body = None
        ack = self.server.store(body, device, "mqtt")
        self.client.publish(f"lpr/v1/devices/{device}/down/ack", json.dumps(ack), qos=1)

    def publish(self, topic: str, body: Any, retain: bool = False) -> None:
        payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def clear_retained(self, device_id: str) -> None:
        for leaf in ("status", "down/config"):
            self.publish(f"lpr/v1/devices/{device_id}/{leaf}", b"", retain=True)

    async def stop(self) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)
