"""Server → camera over MQTT: commands on `down/command`, the desired configuration (retained) on `down/config`.

`devices.commands.deliver` calls these when a camera has no live WebSocket
or Socket.IO connection. One connection per process, opened on first use.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

from django.conf import settings

from transport.envelope import encode_json

from . import topics
from .client import BrokerAddress, Connection, Session

EMBEDDED_URL_ENV = "LPR_MQTT_EMBEDDED_URL"  # set by transport.mqtt.embedded when it starts
CONNECT_TIMEOUT_S = 3.0
PUBLISH_TIMEOUT_S = 3.0

_lock = threading.Lock()
_connection: Connection | None = None


def broker_url() -> str:
    """MQTT_URL, or the embedded broker the run command starts when it is unset (MQTT 3.1.1 only)."""
    return (
        settings.MQTT_URL
        or os.environ.get(EMBEDDED_URL_ENV)
        or f"mqtt://127.0.0.1:{settings.MQTT_EMBEDDED_PORT}?protocol=3.1.1"
    )


def publish_command(device_id: str, command: dict[str, Any], timeout: float = PUBLISH_TIMEOUT_S) -> bool:
    """Publish a command (its wire shape) at QoS 1; True once the broker has taken it."""
    return _publish(topics.down(device_id, "command"), command, retain=False, timeout=timeout)


def publish_config(device_id: str, config: dict[str, Any], timeout: float = PUBLISH_TIMEOUT_S) -> bool:
    """Publish the desired configuration `{version, values}`, retained, so a camera gets it whenever it subscribes."""
    return _publish(topics.down(device_id, "config"), config, retain=True, timeout=timeout)


def _publish(topic: str, body: dict[str, Any], retain: bool, timeout: float) -> bool:
    connection = _shared_connection()
    if not connection.wait_connected(CONNECT_TIMEOUT_S):
        return False
    return connection.publish(topic, encode_json(body), qos=1, retain=retain).wait(timeout)


def _shared_connection() -> Connection:
    global _connection
    with _lock:
        if _connection is None:
            _connection = Connection(BrokerAddress.from_url(broker_url()), Session(f"lpr-downlink-{uuid.uuid4().hex[:12]}"))
            _connection.start()
        return _connection


def close() -> None:
    global _connection
    with _lock:
        if _connection is not None:
            _connection.stop()
            _connection = None
