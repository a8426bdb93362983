"""MQTT beside the web server: what `manage.py serve` starts, and stops when it exits.

With MQTT_URL unset, an embedded broker on MQTT_EMBEDDED_PORT (same
interface as the web server) and a bridge connected to it; with MQTT_URL
set, only the bridge, connected to that broker. The bridge is a child
process (`run_mqtt_bridge`), so it has its own interpreter lock and
database connection, and stops on SIGTERM after its batch in flight.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
from typing import Callable

from django.conf import settings

log = logging.getLogger(__name__)

BRIDGE_STOP_TIMEOUT_S = 20


def start_beside_server(host: str, web_port: int) -> Callable[[], None]:
    """Start MQTT for a server on host:web_port; returns the function that stops it. Never raises."""
    broker = None
    url = settings.MQTT_URL
    if not url:
        from .embedded import EmbeddedBroker  # amqtt is only needed here

        broker = EmbeddedBroker(host, settings.MQTT_EMBEDDED_PORT)
        try:
            broker.start()
        except RuntimeError as exc:
            log.error("%s. MQTT is off: set MQTT_URL to bridge from a broker you run, or MQTT_EMBEDDED_PORT to a free port.", exc)
            return lambda: None
        url = broker.url
    # Stable per server (host and port), so a restart resumes the broker session and gets what was queued.
    client_id = f"lpr-bridge-{socket.gethostname()}-{web_port}"
    # Without REDIS_URL the channel layer lives in this process's memory: only an in-process bridge reaches its dashboards.
    stop_bridge = _bridge_process(url, client_id) if settings.REDIS_URL else _bridge_thread(url, client_id)

    def stop() -> None:
        stop_bridge()
        if broker is not None:
            broker.stop()

    return stop


def _bridge_process(url: str, client_id: str) -> Callable[[], None]:
    """The bridge as a child process (`run_mqtt_bridge`): its own interpreter lock and database connection."""
    bridge = subprocess.Popen(
        [sys.executable, "manage.py", "run_mqtt_bridge", "--url", url, "--client-id", client_id], cwd=settings.BASE_DIR
    )
    log.info("MQTT bridge started (pid %s)", bridge.pid)

    def halt() -> None:
        bridge.terminate()  # SIGTERM: it finishes the batch in flight
        try:
            bridge.wait(BRIDGE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            bridge.kill()
            bridge.wait()

    return halt


def _bridge_thread(url: str, client_id: str) -> Callable[[], None]:
    """The bridge on a thread of this process."""
    from .bridge import Bridge, Limits
    from .client import SESSION_EXPIRY_S, BrokerAddress

    stop = threading.Event()
    # One lane: it shares this process with the web server, and the embedded default is SQLite (one writer at a time).
    bridge = Bridge(BrokerAddress.from_url(url), client_id, None, Limits(lanes=1), SESSION_EXPIRY_S)
    thread = threading.Thread(target=bridge.run, args=(stop,), name="lpr-mqtt-bridge", daemon=True)
    thread.start()
    log.info("MQTT bridge running in this process (no REDIS_URL: one in-memory channel layer)")

    def halt() -> None:
        stop.set()
        thread.join(BRIDGE_STOP_TIMEOUT_S)

    return halt
