"""MQTT transport (paho-mqtt 2.x, QoS 1). The only module that imports paho.

Up: each envelope is published to ``lpr/v1/devices/<id>/up/<data_type>``.
Down: ``lpr/v1/devices/<id>/down/#``; ``down/ack`` carries the same ack object
as the other transports, ``down/command`` a command, ``down/config`` the
desired config (retained). Status: last will ``offline`` (retained) on
``lpr/v1/devices/<id>/status``, ``online`` (retained) published on connect.

paho runs its network loop in its own thread; every callback hops onto the
asyncio loop with ``loop.call_soon_threadsafe`` and touches no asyncio object
directly.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .base import Ack, AckWaiter, DeviceIdentity, PushHandler, Transport, TransportError

log = logging.getLogger(__name__)


def topic_root(device_id: str) -> str:
    return f"lpr/v1/devices/{device_id}"


class MqttTransport(Transport):
    name = "mqtt"

    def __init__(
        self, device: DeviceIdentity, on_push: PushHandler | None = None, *,
        ack_timeout_s: float = 10.0, open_timeout_s: float = 10.0, keepalive_s: int = 30,
        clean_session: bool = False,
    ) -> None:
        super().__init__(device, on_push)
        url = urlsplit(device.mqtt_url or "mqtt://127.0.0.1:1883")
        self.host, self.tls = url.hostname or "127.0.0.1", url.scheme in ("mqtts", "ssl")
        self.port = url.port or (8883 if self.tls else 1883)
        self.ack_timeout_s, self.open_timeout_s = ack_timeout_s, open_timeout_s
        self.keepalive_s, self.clean_session = keepalive_s, clean_session
        self.root = topic_root(device.device_id)
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = False
        self._acks = AckWaiter()
        self._ready: asyncio.Future[int] | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    def _make_client(self) -> mqtt.Client:
        # A stable client id with a persistent session: QoS 1 commands and acks
        # sent while the camera was away are delivered when it comes back.
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"edge-{self.device.device_id}",
            clean_session=self.clean_session, protocol=mqtt.MQTTv311,
        )
        client.username_pw_set(self.device.device_id, self.device.key)
        client.will_set(f"{self.root}/status", "offline", qos=1, retain=True)
        if self.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._ready = self._loop.create_future()
        self._acks = AckWaiter()
        self._client = client = self._make_client()
        try:
            # A blocking connect fails fast when the broker is down (connect_async
            # would retry quietly in the background until our timeout).
            await asyncio.wait_for(asyncio.to_thread(
                client.connect, self.host, self.port, self.keepalive_s), self.open_timeout_s)
            client.loop_start()
            rc = await asyncio.wait_for(self._ready, self.open_timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            await self._stop_client()
            raise TransportError("connect_failed", repr(exc)) from exc
        if rc != 0:
            await self._stop_client()
            raise TransportError("auth" if rc in (4, 5, 134, 135) else "connect_failed",
                                 f"CONNACK {rc}")

    # -- paho thread -----------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:
            client.subscribe(f"{self.root}/down/#", qos=1)
            client.publish(f"{self.root}/status", "online", qos=1, retain=True)
        self._call(self._connected_cb, int(rc.value))

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self._call(self._disconnected_cb, str(rc))

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._call(self._message_cb, msg.topic, bytes(msg.payload))

    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    # -- asyncio loop ----------------------------------------------------------
    def _connected_cb(self, rc: int) -> None:
        self._connected = rc == 0
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(rc)

    def _disconnected_cb(self, reason: str) -> None:
        self._connected = False
        self._acks.fail_all(TransportError("connection_lost", reason))

    def _message_cb(self, topic: str, payload: bytes) -> None:
        try:
            body = json.loads(payload) if payload else None
        except ValueError:
            log.warning("mqtt: not JSON on %s", topic)
            return
        leaf = topic.rsplit("/", 1)[-1]
        if leaf == "ack" and isinstance(body, dict):
            self._acks.resolve(body)
        elif leaf == "command" and isinstance(body, dict):
            self.dispatch({"type": "command", "command": body.get("command", body)})
        elif leaf in ("config", "protocol", "video") and isinstance(body, dict):
            self.dispatch({**body, "type": leaf})

    async def send(self, envelopes: list[dict[str, Any]]) -> list[Ack]:
        client = self._client
        if client is None or not self._connected:
            raise TransportError("connection_lost", "not connected")
        futs = {e["message_id"]: self._acks.expect(e["message_id"]) for e in envelopes}
        for env in envelopes:
            info = client.publish(f"{self.root}/up/{env['data_type']}",
                                  json.dumps(env, separators=(",", ":")), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._acks.fail_all(TransportError("connection_lost", f"publish rc {info.rc}"))
                break
        return await self._acks.gather(futs, self.ack_timeout_s)

    async def _stop_client(self) -> None:
        client, self._client = self._client, None
        self._connected = False
        if client is not None:
            await asyncio.to_thread(client.loop_stop)

    async def close(self) -> None:
        client = self._client
        if client is not None and self._connected:
            # A clean disconnect suppresses the will, so say offline ourselves.
            info = client.publish(f"{self.root}/status", "offline", qos=1, retain=True)
            try:
                await asyncio.to_thread(info.wait_for_publish, 2.0)
            except (RuntimeError, ValueError):
                pass  # the connection went away meanwhile: the will says offline instead
            client.disconnect()
        await self._stop_client()
        self._acks.fail_all(TransportError("connection_lost", "closed"))
