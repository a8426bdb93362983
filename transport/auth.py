"""How a camera proves who it is, on every transport: keys, request signatures and JWTs."""

from __future__ import annotations

import hashlib
import hmac
import time

import jwt
from django.conf import settings
from django.db import models

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


def authenticate_key(key: str) -> Device:
    if not key:
        raise AuthError("unauthenticated", "Send the device key as 'Authorization: Device <key>'.")
    device = _device_by_key_hash(hash_key(key))
    if device is None:
        raise AuthError("unauthenticated", "Unknown or revoked device key.")
    if not device.active:
        raise AuthError("forbidden", f"Device {device.id} is deactivated.")
    return device


# Every camera request looks its device up, so the lookup skips the ORM's query building (a good part of a small
# request): a statement the server prepares once. JSON fields are left deferred (loaded if ever read).
_LOOKUP_FIELDS = [f for f in Device._meta.concrete_fields if not isinstance(f, models.JSONField)]
_BY_KEY_HASH = (f"SELECT {', '.join(f.column for f in _LOOKUP_FIELDS)} FROM {Device._meta.db_table} "
                "WHERE key_hash = %s")  # fmt: skip


def _device_by_key_hash(key_hash: str) -> Device | None:
    with bulk.server_cursor() as cursor:
        cursor.execute(_BY_KEY_HASH, [key_hash])
        row = cursor.fetchone()
    return None if row is None else Device.from_db("default", [f.attname for f in _LOOKUP_FIELDS], row)


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
