"""The embedded MQTT broker (amqtt, MQTT 3.1.1) that the run command starts when MQTT_URL is unset.

It lets cameras use MQTT with nothing installed, under the same rules as a
Mosquitto configured by `mqtt_credentials`: a device logs in with its id and
key and may touch only `lpr/v1/devices/<its id>/#`; the bridge logs in with
an account whose password is made up at each start and handed to it (and
to this process's downlink publisher) through `EMBEDDED_URL_ENV`.
No persistence: a restart of the server forgets queued messages, so use
Mosquitto when that matters (docs/mqtt.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session
from asgiref.sync import sync_to_async
from django.db import connection

from transport.auth import AuthError, authenticate_key

from . import topics
from .downlink import EMBEDDED_URL_ENV

BRIDGE_USERNAME = "lpr-bridge"
log = logging.getLogger(__name__)


class DeviceAuthPlugin(BaseAuthPlugin):
    """Username = device id, password = device key; or the bridge account."""

    @dataclass
    class Config:
        bridge_password: str = field(default="")

    async def authenticate(self, *, session: Session) -> bool:
        username, password = session.username or "", session.password or ""
        if username == BRIDGE_USERNAME:
            return bool(self.context.config.bridge_password) and hmac.compare_digest(
                password.encode(), self.context.config.bridge_password.encode()
            )
        if not username or not password:
            return False
        return await sync_to_async(_is_device_key, thread_sensitive=False)(username, password)


def _is_device_key(device_id: str, key: str) -> bool:
    # Runs on an executor thread that no request cycle ever cleans up, so the connection is closed here:
    # a camera logs in once per connection, rarely enough that reconnecting costs nothing that matters.
    try:
        return authenticate_key(key).id == device_id
    except AuthError:
        return False
    finally:
        connection.close()


class DeviceTopicPlugin(BaseTopicPlugin):
    """A device may publish, subscribe and receive only under its own `lpr/v1/devices/<id>/`, and only while
    the key it logged in with is still its key: a rotation or a deactivation shuts an open session out within
    RECHECK_S (amqtt offers no way to close a session from outside)."""

    RECHECK_S = 2.0

    @dataclass
    class Config:
        pass

    def __init__(self, context) -> None:
        super().__init__(context)
        self._checked: dict[tuple[str, str], tuple[bool, float]] = {}

    async def topic_filtering(self, *, session: Session | None = None, topic: str | None = None,
                              action: Action | None = None) -> bool:  # fmt: skip
        if session is None or topic is None:
            return False
        if session.username == BRIDGE_USERNAME:
            return True
        return topic.startswith(f"{topics.ROOT}/{session.username}/") and await self._still_valid(session)

    async def _still_valid(self, session: Session) -> bool:
        entry = (session.username or "", hashlib.sha256((session.password or "").encode()).hexdigest())
        valid, at = self._checked.get(entry, (False, float("-inf")))
        if time.monotonic() - at > self.RECHECK_S:
            if len(self._checked) > 10_000:  # one entry per device login; forget them now and then
                self._checked.clear()
            valid = await sync_to_async(_is_device_key, thread_sensitive=False)(session.username or "", session.password or "")
            self._checked[entry] = (valid, time.monotonic())
        return valid


class EmbeddedBroker:
    """amqtt on its own thread and event loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host, self.port = host, port
        self.password = secrets.token_urlsafe(24)
        self._loop = asyncio.new_event_loop()
        self._broker: Broker | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mqtt-embedded-broker", daemon=True)

    @property
    def url(self) -> str:
        """What the bridge and the downlink publisher connect with (3.1.1: amqtt has no MQTT 5)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"mqtt://{BRIDGE_USERNAME}:{self.password}@{host}:{self.port}?protocol=3.1.1"

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._started.wait(timeout) or self._error:
            raise RuntimeError(f"the embedded MQTT broker did not start on {self.host}:{self.port}: {self._error}")
        os.environ[EMBEDDED_URL_ENV] = self.url
        log.info("embedded MQTT broker listening on %s:%s", self.host, self.port)

    def stop(self, timeout: float = 10.0) -> None:
        if self._broker is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start_broker())
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    async def _start_broker(self) -> None:
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                f"{__name__}.DeviceAuthPlugin": {"bridge_password": self.password},
                f"{__name__}.DeviceTopicPlugin": {},
            },
        }
        self._broker = Broker(config, loop=self._loop)
        await self._broker.start()
