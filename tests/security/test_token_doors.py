"""Device JWTs on the transports that use them (WebSocket, by query or header, and Socket.IO), as a table.

A real server (`manage.py serve`) on the test database; each token is tried on each transport.
"""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
import socketio
import websockets
from django.conf import settings
from websockets.exceptions import ConnectionClosed

from devices.credentials import rotate_key
from tests.factories import DeviceFactory
from transport.auth import TOKEN_ALGORITHM, TOKEN_AUDIENCE, issue_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TRANSPORTS = ("ws_query", "ws_header", "socketio")
# token | WebSocket `?token=`, WebSocket `Authorization: Bearer`, Socket.IO `auth={"token"}`
TOKENS = [
    ("valid", "", "open", "open", "open"),
    ("missing", "", 4401, 4401, 4401),
    ("not_a_jwt", "", 4401, 4401, 4401),
    ("expired", "", 4401, 4401, 4401),
    ("wrong_signature", "", 4401, 4401, 4401),
    ("wrong_audience", "", 4401, 4401, 4401),
    ("alg_none", "", 4401, 4401, 4401),
    ("no_key_version", "", 4401, 4401, 4401),
    ("rotated_out", "", 4401, 4401, 4401),
    ("unknown_device", "", 4401, 4401, 4401),
    ("deactivated_device", "", 4403, 4403, 4403),
]


def _claims(device, **changes) -> dict:
    now = int(time.time())
    claims = {"sub": device.id, "aud": TOKEN_AUDIENCE, "iat": now, "exp": now + 300, "kv": device.key_version}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def make_token(case: str) -> str:
    """A token of the kind named, for a fresh device."""
    device = DeviceFactory()
    secret = settings.DEVICE_TOKEN_SECRET

    def signed(**changes):
        return jwt.encode(_claims(device, **changes), secret, algorithm=TOKEN_ALGORITHM)

    if case == "rotated_out":
        token = issue_token(device)[0]
        rotate_key(device)
        return token
    if case == "deactivated_device":
        token = issue_token(device)[0]
        device.active = False
        device.save(update_fields=["active"])
        return token
    return {
        "valid": lambda: issue_token(device)[0],
        "missing": lambda: "",
        "not_a_jwt": lambda: "not-a-jwt",
        "expired": lambda: signed(iat=int(time.time()) - 100, exp=int(time.time()) - 10),
        "wrong_signature": lambda: jwt.encode(_claims(device), "another-secret-of-32-bytes-or-more!", algorithm="HS256"),
        "wrong_audience": lambda: signed(aud="lpr-operator"),
        "alg_none": lambda: jwt.encode(_claims(device), None, algorithm="none"),
        "no_key_version": lambda: signed(kv=None),
        "unknown_device": lambda: signed(sub="NO-SUCH-CAMERA"),
    }[case]()


async def websocket_outcome(server, token: str, header: bool):
    """"open" once a frame sent on it is answered; else the close code."""
    url, headers = f"{server.ws}/ws/device/", {}
    if header:
        headers["Authorization"] = f"Bearer {token}"
    else:
        url += f"?token={token}"
    async with websockets.connect(url, additional_headers=headers) as ws:
        try:
            await ws.send("{}")  # not an envelope: an open connection answers with a rejected ack
            await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed:
            return ws.close_code
        return "open"


async def socketio_outcome(server, token: str):
    client = socketio.AsyncClient(reconnection=False)
    refusals: list = []
    client.on("connect_error", refusals.append, namespace="/device")
    try:
        await client.connect(server.http, namespaces=["/device"], auth={"token": token}, transports=["websocket"],
                             wait_timeout=5)  # fmt: skip
    except socketio.exceptions.ConnectionError:
        return refusals[0]["data"]["close_code"] if refusals else "refused"
    await client.disconnect()
    return "open"


def test_device_token_doors(security_server):
    """One test for the whole table (each row is a fresh device): a server-backed test flushes the database after."""
    expected = {row[0]: dict(zip(TRANSPORTS, row[2:])) for row in TOKENS}
    tokens = {case: make_token(case) for case in expected}

    async def outcomes(token: str) -> dict:
        return {
            "ws_query": await websocket_outcome(security_server, token, header=False),
            "ws_header": await websocket_outcome(security_server, token, header=True),
            "socketio": await socketio_outcome(security_server, token),
        }

    async def scenario():
        return {case: await outcomes(token) for case, token in tokens.items()}

    assert asyncio.run(scenario()) == expected
