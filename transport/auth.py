"""How a camera proves who it is, on every transport: keys, request signatures and JWTs."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import jwt
from django.conf import settings
from django.db import connection, models

from devices.credentials import device_key, hash_key
from devices.models import Device
from lpr_server import bulk

TOKEN_AUDIENCE = "lpr-device"
TOKEN_ALGORITHM = "HS256"


class AuthError(Exception):
    """Refused credentials. `code` is the contract's error code."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Credentials:
    """What an HTTP request presents: a device key and, for a signed request, its signature headers and body."""

    key: str
    timestamp: str | None = None
    signature: str | None = None
    body: bytes = b""

    def check(self, device: Device | None) -> Device:
        """The device these credentials prove, or `AuthError` (`device` is the one the key's hash found)."""
        if not self.key:
            raise AuthError("unauthenticated", "Send the device key as 'Authorization: Device <key>'.")
        device = _active(device)
        if device.require_signature:
            verify_signature(device, self.timestamp, self.signature, self.body)
        return device


def authenticate_key(key: str) -> Device:
    """The active device this key belongs to, or `AuthError` (request signatures are the caller's to check)."""
    if not key:
        raise AuthError("unauthenticated", "Send the device key as 'Authorization: Device <key>'.")
    return _active(device_for_key(key))


def device_for_key(key: str) -> Device | None:
    """The device this key belongs to, active or not; None for no key or an unknown (or rotated-out) one."""
    if not key:
        return None
    key_hash = hash_key(key)
    return _devices_by_key_hash([key_hash]).get(key_hash)


def authenticate_all(presented: list[Credentials]) -> list[Device | AuthError]:
    """`Credentials.check` for many requests at once (micro-batched REST ingest), with one query for all."""
    devices = _devices_by_key_hash({hash_key(c.key) for c in presented if c.key})
    out: list[Device | AuthError] = []
    for c in presented:
        try:
            out.append(c.check(devices.get(hash_key(c.key)) if c.key else None))
        except AuthError as exc:
            out.append(exc)
    return out


def _active(device: Device | None) -> Device:
    if device is None:
        raise AuthError("unauthenticated", "Unknown or revoked device key.")
    if not device.active:
        raise AuthError("forbidden", f"Device {device.id} is deactivated.")
    return device


# Every camera request looks its device up, so the lookup skips the ORM's query building (a good part of a small
# request): a statement the server prepares once. JSON fields are left deferred (loaded if ever read).
_LOOKUP_FIELDS = [f for f in Device._meta.concrete_fields if not isinstance(f, models.JSONField)]
_BY_KEY_HASH = (f"SELECT {', '.join(f.column for f in _LOOKUP_FIELDS)} FROM {Device._meta.db_table} "
                "WHERE key_hash = ANY(%s)")  # fmt: skip


def _devices_by_key_hash(key_hashes) -> dict[str, Device]:
    if connection.vendor != "postgresql":  # the laptop's SQLite: the ORM
        return {d.key_hash: d for d in Device.objects.filter(key_hash__in=list(key_hashes))}
    with bulk.server_cursor() as cursor:
        cursor.execute(_BY_KEY_HASH, [list(key_hashes)])
        rows = cursor.fetchall()
    names = [f.attname for f in _LOOKUP_FIELDS]
    return {device.key_hash: device for device in (Device.from_db("default", names, row) for row in rows)}


def key_from_header(header: str, schemes: tuple[str, ...] = ("Device",)) -> str:
    scheme, _, key = header.partition(" ")
    return key.strip() if scheme in schemes else ""


def verify_signature(device: Device, timestamp: str | None, signature: str | None, body: bytes) -> None:
    """Check `X-Signature: sha256=<hex HMAC(key, timestamp + "." + body)>` with a fresh `X-Timestamp`."""
    if not timestamp or not signature:
        raise AuthError("unauthenticated", "This device must sign requests: send X-Timestamp and X-Signature.")
    try:
        skew = abs(time.time() - int(timestamp))
    except ValueError:
        raise AuthError("unauthenticated", "X-Timestamp must be unix seconds.") from None
    if skew > settings.SIGNATURE_MAX_SKEW_S:
        raise AuthError("unauthenticated", f"X-Timestamp is {int(skew)} s off; allowed ±{settings.SIGNATURE_MAX_SKEW_S} s.")
    expected = "sha256=" + sign(device_key(device), timestamp, body)
    if not hmac.compare_digest(expected, signature.strip()):
        raise AuthError("unauthenticated", "X-Signature does not match the body and timestamp.")


def sign(key: str, timestamp: str, body: bytes) -> str:
    return hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def issue_token(device: Device) -> tuple[str, int]:
    """A short-lived JWT for WebSocket and Socket.IO. Rotating the key (key_version) revokes it."""
    ttl = settings.DEVICE_TOKEN_TTL_S
    now = int(time.time())
    claims = {"sub": device.id, "aud": TOKEN_AUDIENCE, "iat": now, "exp": now + ttl, "kv": device.key_version}
    return jwt.encode(claims, settings.DEVICE_TOKEN_SECRET, algorithm=TOKEN_ALGORITHM), ttl


def authenticate_token(token: str) -> Device:
    try:
        claims = jwt.decode(
            token,
            settings.DEVICE_TOKEN_SECRET,
            algorithms=[TOKEN_ALGORITHM],
            audience=TOKEN_AUDIENCE,
            options={"require": ["sub", "exp", "aud", "kv"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("unauthenticated", "Token expired; get a new one from /api/v1/device/token/.") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError("unauthenticated", f"Invalid token: {exc}.") from None
    device = Device.objects.filter(pk=claims["sub"], key_version=claims["kv"]).first()
    if device is None:
        raise AuthError("unauthenticated", "Token was revoked (key rotated or device removed).")
    if not device.active:
        raise AuthError("forbidden", f"Device {device.id} is deactivated.")
    return device
