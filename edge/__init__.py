"""Camera-side SDK for the LPR server: envelopes, transports, a durable outbox, the simulator.

Imports nothing from Django or the server; only the wire contract
(``CONTRACT.md``) ties the two together.

A camera::

    from edge import EdgeClient

    client = EdgeClient("https://lpr.example.com", "CAM001", key, payload_key,
                        mqtt_url="mqtt://lpr.example.com:1883",
                        outbox_path="/var/lib/cam/outbox.sqlite",
                        protocol="auto")        # or websocket|socketio|rest|mqtt
    await client.start()
    await client.send_detection("AB123CD", 0.93, region="it")
    ref = await client.upload_image(jpeg_bytes)   # REST, returns the image_ref
    await client.send_detection("AB123CD", 0.93, image_ref=ref)
    await client.send_health(cpu_percent=31.5, network={"bandwidth_kbps": 4000})
    ...
    await client.stop(drain_timeout_s=5)

Every message is written to the SQLite outbox (message_id and sequence fixed)
before it is sent and leaves it only on the server's ack; on failure the
:class:`~edge.selector.ProtocolSelector` steps down websocket -> rest -> mqtt ->
offline and back up with hysteresis. Switches are reported in ``health``
payloads as ``protocol_switches: [{from, to, reason, at, score, recommended}]``.
Pushed commands ``ping``, ``switch_protocol`` and ``set_config`` are executed
and answered with ``control`` envelopes (``received``, then ``done``/``failed``).

Simulator and fault injection::

    python -m edge.simulate --server http://127.0.0.1:8000 --cameras 50 --rate 2 \
        --protocol auto --mqtt mqtt://127.0.0.1:1883 --duration 60 \
        --credentials devices.json --state-dir sim-state
        # tests shorten the selector: --evaluate-interval 0.5 --probe-interval 1 --up-after 2
        # --min-dwell 3 --offline-retry 0.5 --offline-retry-max 2 --ack-timeout 5 --ws-server URL
    python -m edge.faultproxy --target 127.0.0.1:8000     # prints {"listen", "control"}

``devices.json`` is ``[{"device_id", "key", "payload_key"}, ...]`` (or those
objects one after another). Each camera appends to
``<state-dir>/<device_id>.messages.jsonl`` one line per event:
``{"event": "produced", "message_id", "sequence", "data_type", "timestamp"}``,
``{"event": "ack", "message_id", "status"}``, ``{"event": "dropped", ...}``,
``{"event": "switch", "from", "to", "reason", ...}``.

Modules:
    envelope     build_envelope, encode_payload/decode_payload (gzip, Fernet), SequenceCounter
    outbox       Outbox, OutboxLimits: WAL SQLite, ack settling, shedding policy
    selector     connectivity_score, recommend, ProtocolSelector
    transports   Transport interface; rest, ws (websockets), sio (Socket.IO), mqtt (paho)
    client       EdgeClient
    commands     command execution and configuration
    plates       realistic plate reads for the simulator
    simulate     ``python -m edge.simulate --server URL --cameras 50 --rate 2 ...``
    faultproxy   FaultProxy, ``python -m edge.faultproxy --target HOST:PORT``
"""
from __future__ import annotations

from .client import EdgeClient
from .envelope import build_envelope, decode_payload, encode_payload
from .outbox import Outbox, OutboxLimits
from .selector import ProtocolSelector, connectivity_score, recommend

__all__ = [
    "EdgeClient", "Outbox", "OutboxLimits", "ProtocolSelector", "build_envelope",
    "connectivity_score", "decode_payload", "encode_payload", "recommend",
]
