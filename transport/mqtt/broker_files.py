"""Mosquitto's password file and access list for the devices and the bridge account.

The password hash is what `mosquitto_passwd` writes by default since
Mosquitto 2.0: `user:$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>`,
with a 12-byte salt, a 64-byte hash and 101 iterations.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Iterable

from . import topics

PBKDF2_ITERATIONS = 101
SALT_BYTES = 12


def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = salt or secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_file(accounts: Iterable[tuple[str, str]]) -> str:
    """One `username:hash` line per (username, password)."""
    return "".join(f"{username}:{hash_password(password)}\n" for username, password in accounts)


def access_list(bridge_username: str) -> str:
    """Each device (username = device id) may touch only its own topics; the bridge all devices' topics."""
    return (
        "# Written by `manage.py mqtt_credentials`. Devices: username = device id.\n"
        f"pattern readwrite {topics.ROOT}/%u/#\n"
        "\n"
        f"user {bridge_username}\n"
        f"topic readwrite {topics.ROOT}/#\n"
    )
