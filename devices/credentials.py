"""Device credentials: issuing and rotating keys, and sealing the secrets we must keep.

A device key is shown once. We store its SHA-256 (keys are 256 random bits,
so an unsalted fast hash is safe and lets every request look a device up by
one indexed query) and, because request signatures and broker password
files need the key itself, a copy sealed with SECRETS_KEY. The Fernet
payload key is sealed the same way. A database dump alone reveals neither.

SECRETS_KEY may name several Fernet keys, comma-separated, while it is being
rotated: the first seals, any of them unseals, and `manage.py reseal_secrets`
seals everything again with the first so the others can be dropped.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F

from . import channels
from .models import Device

KEY_PREFIX = "lpr_"


@dataclass(frozen=True)
class IssuedCredentials:
    device_id: str
    key: str
    payload_key: str

    def as_dict(self) -> dict[str, str]:
        return {"device_id": self.device_id, "key": self.key, "payload_key": self.payload_key}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def seal(secret: str) -> str:
    return _vault().encrypt(secret.encode()).decode()


def unseal(token: str) -> str:
    return _vault().decrypt(token.encode()).decode()


def reseal(token: str) -> str:
    """The same secret sealed with SECRETS_KEY's first key (raises InvalidToken if none of its keys opens it)."""
    return _vault().rotate(token.encode()).decode()


def device_key(device: Device) -> str:
    return unseal(device.key_encrypted)


def payload_key(device: Device) -> bytes:
    return unseal(device.payload_key_encrypted).encode()


def create_device(device_id: str, **fields) -> tuple[Device, IssuedCredentials]:
    device = Device(id=device_id, **fields)
    issued = assign_credentials(device)
    device.full_clean()
    device.save(force_insert=True)
    return device, issued


def assign_credentials(device: Device) -> IssuedCredentials:
    """Give an unsaved device its key and payload key; the caller shows them once and saves."""
    key, pkey = _new_key(), Fernet.generate_key().decode()
    device.key_hash, device.key_encrypted, device.payload_key_encrypted = hash_key(key), seal(key), seal(pkey)
    return IssuedCredentials(device.id, key, pkey)


@transaction.atomic
def rotate_key(device: Device) -> IssuedCredentials:
    """Give the device a new key; the old key (and tokens made with it) stop working at once."""
    key = _new_key()
    Device.objects.filter(pk=device.pk).update(
        key_hash=hash_key(key), key_encrypted=seal(key), key_version=F("key_version") + 1
    )
    device.refresh_from_db(fields=["key_hash", "key_encrypted", "key_version"])
    revoked(device.id, "unauthenticated")
    return IssuedCredentials(device.id, key, unseal(device.payload_key_encrypted))


@transaction.atomic
def deactivate(device_ids: list[str]) -> int:
    """Refuse the devices on every transport from now on; their open connections are closed."""
    ids = list(Device.objects.filter(pk__in=device_ids, active=True).values_list("pk", flat=True))
    Device.objects.filter(pk__in=ids).update(active=False)
    for device_id in ids:
        revoked(device_id, "forbidden")
    return len(ids)


# Why a device's open connections were closed, by the contract's code.
REVOKED_BECAUSE = {"unauthenticated": "The device key was rotated.", "forbidden": "The device was deactivated."}


def revoked(device_id: str, error: str) -> None:
    """Once committed, have the transports close what the device holds open at once (`error` is the
    contract's code: `unauthenticated` for a rotated key, `forbidden` for a deactivated device)."""
    detail = REVOKED_BECAUSE[error]
    transaction.on_commit(lambda: channels.announce("revoked", device_id, error=error, detail=detail))


def _new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _vault() -> MultiFernet:
    return vault_for(settings.SECRETS_KEY)


@lru_cache(maxsize=8)
def vault_for(secrets_key: str) -> MultiFernet:
    """SECRETS_KEY's keys, the first sealing; a value that is not a list of Fernet keys stops with what to do."""
    keys = [k.strip() for k in secrets_key.split(",") if k.strip()]
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except ValueError as exc:  # no key at all, or one that is not 32 url-safe base64-encoded bytes
        raise ImproperlyConfigured(
            "SECRETS_KEY must be one Fernet key (32 url-safe base64-encoded bytes), or several separated by commas "
            "while rotating; make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from exc
