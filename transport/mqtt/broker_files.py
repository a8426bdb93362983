"""Mosquitto's password file and access list for the devices and the bridge account.

The password hash is what `mosquitto_passwd` writes by default since
Mosquitto 2.0: `user:$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>`,
with a 12-byte salt, a 64-byte hash and 101 iterations.

The access list names each active device: a device's username is its id, on
a password listener, or its client certificate's common name, on a
certificate listener (`use_identity_as_username`). A device that is not
listed (deactivated, or unknown to the server) may touch no topic at all,
even with a certificate the broker still trusts.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from devices.credentials import device_key
from devices.models import Device

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


def access_list(bridge_username: str, device_ids: Iterable[str]) -> str:
    """Each listed device may touch only its own topics; the bridge all devices' topics."""
    lines = ["# Written by `manage.py mqtt_credentials`: active devices only (username = device id or the",
             "# certificate's common name), each confined to its own topics; the bridge sees all of them.", ""]  # fmt: skip
    for device_id in device_ids:
        lines += [f"user {device_id}", f"topic readwrite {topics.ROOT}/{device_id}/#", ""]
    lines += [f"user {bridge_username}", f"topic readwrite {topics.ROOT}/#", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class BridgeAccount:
    username: str
    password: str


def credentials_state() -> list[tuple[str, int, bool]]:
    """What the files depend on: a change here (a device added, rotated, deactivated) calls for new files."""
    return list(Device.objects.order_by("id").values_list("id", "key_version", "active"))


def write(directory: Path, bridge: BridgeAccount) -> int:
    """Write `passwd` and `acl` for the active devices and the bridge; returns how many devices they hold."""
    if Device.objects.filter(id=bridge.username).exists():
        raise ValueError(f"A device is called {bridge.username!r}; give the bridge account another name.")
    devices = list(Device.objects.filter(active=True).order_by("id"))
    directory.mkdir(parents=True, exist_ok=True)
    accounts = [(bridge.username, bridge.password)] + [(d.id, device_key(d)) for d in devices]
    _write(directory / "passwd", password_file(accounts))
    _write(directory / "acl", access_list(bridge.username, [d.id for d in devices]))
    return len(devices)


def reload_broker(pid_file: Path) -> int:
    """SIGHUP the broker whose pid Mosquitto wrote (`pid_file`): it rereads both files and disconnects
    clients whose password no longer matches."""
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGHUP)
    return pid


def _write(path: Path, text: str) -> None:
    # The password file holds only salted hashes, but there is no reason for anyone else to read it.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o640)
    tmp.replace(path)
