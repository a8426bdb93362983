"""Contract envelopes (CONTRACT section 1): building, payload encoding, sequence numbers.

The envelope is built once, when a message is produced, and stored as is in the
outbox; ``message_id``, ``timestamp`` and ``sequence`` never change afterwards, so
a resend on another transport is the same message to the server.
"""
from __future__ import annotations

import base64
import gzip
import json
import sqlite3
import uuid
from datetime import datetime, timezone
from typing import Any

from cryptography.fernet import Fernet

PROTOCOL_VERSION = "1.0"
DATA_TYPES = ("detection", "health", "config", "control")
PROTOCOLS = ("websocket", "socketio", "rest", "mqtt")

Envelope = dict[str, Any]


def utc_timestamp(now: datetime | None = None) -> str:
    """ISO 8601 in UTC with millisecond precision and a ``Z`` zone."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _fernet(payload_key: str | bytes) -> Fernet:
    return Fernet(payload_key.encode() if isinstance(payload_key, str) else payload_key)


def encode_payload(
    payload: dict[str, Any],
    compression: bool = False,
    payload_key: str | bytes | None = None,
) -> tuple[dict[str, Any] | str, dict[str, Any]]:
    """Return ``(payload, metadata)``: gzip first, then Fernet, as the contract orders."""
    metadata: dict[str, Any] = {
        "protocol_version": PROTOCOL_VERSION,
        "compression": "gzip" if compression else False,
        "encryption": "fernet" if payload_key else False,
    }
    if not compression and not payload_key:
        return payload, metadata
    raw = json.dumps(payload, separators=(",", ":")).encode()
    if compression:
        # The base64 text of the gzip stream is what gets encrypted, so that a
        # decoder can undo the two steps independently.
        raw = base64.b64encode(gzip.compress(raw))
    if payload_key:
        return _fernet(payload_key).encrypt(raw).decode(), metadata
    return raw.decode(), metadata


def decode_payload(
    payload: dict[str, Any] | str,
    metadata: dict[str, Any] | None,
    payload_key: str | bytes | None = None,
) -> dict[str, Any]:
    """Inverse of :func:`encode_payload` (what the server's decoder must do)."""
    metadata = metadata or {}
    if isinstance(payload, dict):
        return payload
    raw = payload.encode()
    if metadata.get("encryption") == "fernet":
        if not payload_key:
            raise ValueError("payload is encrypted and no payload key was given")
        raw = _fernet(payload_key).decrypt(raw)
    if metadata.get("compression") == "gzip":
        raw = gzip.decompress(base64.b64decode(raw))
    return json.loads(raw)


def build_envelope(
    *,
    device_id: str,
    data_type: str,
    payload: dict[str, Any],
    protocol: str,
    sequence: int | None = None,
    compression: bool = False,
    payload_key: str | bytes | None = None,
    message_id: str | None = None,
    timestamp: str | None = None,
) -> Envelope:
    if data_type not in DATA_TYPES:
        raise ValueError(f"unknown data_type {data_type!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    body, metadata = encode_payload(payload, compression, payload_key)
    envelope: Envelope = {
        "message_id": message_id or str(uuid.uuid4()),
        "timestamp": timestamp or utc_timestamp(),
        "protocol": protocol,
        "edge_device_id": device_id,
        "data_type": data_type,
        "payload": body,
        "metadata": metadata,
    }
    if sequence is not None:
        envelope["sequence"] = sequence
    return envelope


class SequenceCounter:
    """Per-device sequence numbers kept in SQLite, so they survive a restart.

    ``next()`` runs inside the caller's transaction when the connection has one
    open: the outbox allocates the number and stores the message in the same
    commit, so a crash can neither reuse a number nor leave a hole.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        conn.execute(
            "CREATE TABLE IF NOT EXISTS edge_sequence"
            " (device_id TEXT PRIMARY KEY, value INTEGER NOT NULL)"
        )

    @classmethod
    def open(cls, path: str) -> "SequenceCounter":
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        return cls(conn)

    def next(self, device_id: str) -> int:
        row = self._conn.execute(
            "INSERT INTO edge_sequence (device_id, value) VALUES (?, 1)"
            " ON CONFLICT(device_id) DO UPDATE SET value = value + 1 RETURNING value",
            (device_id,),
        ).fetchone()
        return int(row[0])

    def current(self, device_id: str) -> int:
        row = self._conn.execute(
            "SELECT value FROM edge_sequence WHERE device_id = ?", (device_id,)
        ).fetchone()
        return int(row[0]) if row else 0
