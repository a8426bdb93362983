"""Secrets at rest and in what the server writes: a database dump reveals no key, and no key, token or payload
key reaches the logs, the refusal records or an error answer, whatever fails on whichever transport.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import time
import urllib.error
import urllib.request

import jwt
import pytest
import socketio
import websockets
from cryptography.fernet import Fernet
from django.conf import settings
from django.db import connection
from django.test import Client
from websockets.exceptions import ConnectionClosed

from devices import credentials
from tests.factories import DeviceFactory, envelope
from tests.mqtt.conftest import Camera
from transport import auth
from transport.auth import TOKEN_ALGORITHM, TOKEN_AUDIENCE, issue_token
from transport.models import RejectedMessage

pytestmark = [pytest.mark.django_db(transaction=True)]


def forms(secret: str) -> list[str]:
    """The ways a secret could sit in a dump or a log: as text, as the hex of its bytes (bytea), decoded base64."""
    out = [secret, secret.encode().hex()]
    try:
        raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
        if len(raw) >= 16:
            out.append(raw.hex())
    except ValueError:
        pass
    return out


def leaked(text: str, secrets: dict[str, str]) -> list[str]:
    lowered = text.lower()
    return sorted(name for name, secret in secrets.items() for form in forms(secret) if form.lower() in lowered)


def database_dump() -> str:
    s = connection.settings_dict
    result = subprocess.run(
        ["pg_dump", "--host", s["HOST"] or "127.0.0.1", "--port", str(s["PORT"] or 5432), "--username", s["USER"],
         "--no-owner", s["NAME"]], capture_output=True, text=True, check=True, timeout=60,
        env={"PGPASSWORD": s["PASSWORD"] or "", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return result.stdout


def device_secrets() -> dict[str, str]:
    """Devices in every state, their credentials used the ways cameras use them; the secrets by name."""
    plain, signing, rotated, retired = DeviceFactory(), DeviceFactory(require_signature=True), DeviceFactory(), DeviceFactory()
    old_key = rotated.issued.key
    new_key = credentials.rotate_key(rotated).key
    credentials.deactivate([retired.id])
    sealed = Fernet(plain.issued.payload_key.encode()).encrypt(json.dumps({"plate": "AB123CD", "confidence": 0.9}).encode())
    encrypted = envelope(plain.id, payload=sealed.decode(), metadata={"protocol_version": "1.0", "encryption": "fernet"})
    assert Client().post("/api/v1/ingest/", json.dumps(encrypted), content_type="application/json",
                         HTTP_AUTHORIZATION=f"Device {plain.issued.key}").status_code == 201  # fmt: skip
    body, ts = json.dumps(envelope(signing.id)).encode(), str(int(time.time()))
    assert Client().post("/api/v1/ingest/", body, content_type="application/json",
                         HTTP_AUTHORIZATION=f"Device {signing.issued.key}", HTTP_X_TIMESTAMP=ts,
                         HTTP_X_SIGNATURE="sha256=" + auth.sign(signing.issued.key, ts, body)).status_code == 201  # fmt: skip
    return {
        "device key": plain.issued.key, "payload key": plain.issued.payload_key,
        "signing device key": signing.issued.key, "signing device payload key": signing.issued.payload_key,
        "rotated-out key": old_key, "rotated-in key": new_key, "deactivated device key": retired.issued.key,
    }  # fmt: skip


def test_a_database_dump_reveals_no_device_key_or_payload_key():
    secrets = device_secrets()
    dump = database_dump()
    assert "key_hash" in dump and len(dump) > 10_000  # it is the dump of this database, with its rows
    assert leaked(dump, secrets) == []
    assert leaked(dump, {"SECRETS_KEY": settings.SECRETS_KEY}) == []


def test_a_database_dump_reveals_no_operator_api_token():
    from lpr_server import tokens
    from tests.factories import OperatorFactory

    operator = OperatorFactory()
    key = tokens.issue(operator, "nightly export")[1]
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/devices/").status_code == 200
    assert leaked(database_dump(), {"operator API token": key}) == []


def test_a_database_dump_reveals_no_webhook_secret():
    from detections.alert_models import Webhook

    secret = "whsec-" + Fernet.generate_key().decode()
    Webhook.objects.create(name="ops", url="https://example.com/hook", secret=secret)
    assert leaked(database_dump(), {"webhook secret": secret}) == []


# --- logs, refusal records, error answers --------------------------------------------------------------------


def _http(server, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> str:
    request = urllib.request.Request(server.http + path, body or None, headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return f"{response.status} {response.read().decode(errors='replace')}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode(errors='replace')}"


def _forged_token(device, secret: str = "not-the-server-secret-but-32-bytes-long") -> str:
    claims = {"sub": device.id, "aud": TOKEN_AUDIENCE, "exp": int(time.time()) + 60, "kv": device.key_version}
    return jwt.encode(claims, secret, algorithm=TOKEN_ALGORITHM)


def drive_failures(server, device, signing) -> tuple[dict[str, str], list[str]]:
    """Fail on every transport, with good and bad credentials; the secrets used, and everything the server answered."""
    token = issue_token(device)[0]
    wrong_key = "lpr_" + base64.urlsafe_b64encode(b"w" * 32).decode().rstrip("=")
    wrong_payload_key = Fernet.generate_key().decode()
    secrets = {"device key": device.issued.key, "payload key": device.issued.payload_key, "JWT": token,
               "signing device key": signing.issued.key, "wrong key": wrong_key, "forged JWT": _forged_token(device),
               "wrong payload key": wrong_payload_key}  # fmt: skip
    good, json_type = {"Authorization": f"Device {device.issued.key}"}, {"Content-Type": "application/json"}
    undecryptable = envelope(device.id, payload=Fernet(wrong_payload_key.encode()).encrypt(b"{}").decode(),
                             metadata={"protocol_version": "1.0", "encryption": "fernet"})  # fmt: skip
    body = json.dumps(envelope(signing.id)).encode()
    answers = [
        _http(server, "POST", "/api/v1/ingest/", b"{}", {"Authorization": f"Device {wrong_key}", **json_type}),
        _http(server, "POST", "/api/v1/ingest/", b"not json", {**good, **json_type}),
        _http(server, "POST", "/api/v1/ingest/", json.dumps(undecryptable).encode(), {**good, **json_type}),
        _http(server, "POST", "/api/v1/ingest/", body, {"Authorization": f"Device {signing.issued.key}", **json_type,
              "X-Timestamp": str(int(time.time())), "X-Signature": "sha256=" + "0" * 64}),
        _http(server, "POST", f"/api/v1/compat/openalpr/?key={device.issued.key}", b"[1, 2]", json_type),
        _http(server, "POST", f"/api/v1/compat/platerecognizer/?key={wrong_key}", b"{}", json_type),
        _http(server, "POST", "/api/v1/compat/hikvision/", b"<not-xml", {"Authorization": f"Token {device.issued.key}"}),
        _http(server, "GET", f"/api/v1/device/config/?key={device.issued.key}&token={token}", b"", good),
    ]  # fmt: skip
    answers += asyncio.run(_realtime_failures(server, device, token, secrets["forged JWT"]))
    answers += _mqtt_failures(server, device, wrong_key)
    return secrets, answers


async def _realtime_failures(server, device, token: str, forged: str) -> list[str]:
    answers = []
    async with websockets.connect(f"{server.ws}/ws/device/?token={token}") as ws:
        await ws.send("not json")
        answers.append(await asyncio.wait_for(ws.recv(), 10))
    for url, headers in ((f"{server.ws}/ws/device/?token={forged}", {}),
                         (f"{server.ws}/ws/device/", {"Authorization": f"Bearer {forged}"})):  # fmt: skip
        async with websockets.connect(url, additional_headers=headers) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed:
                answers.append(f"{ws.close_code} {ws.close_reason}")
    refused = socketio.AsyncClient(reconnection=False)
    refused.on("connect_error", lambda data: answers.append(json.dumps(data)), namespace="/device")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(server.http, namespaces=["/device"], auth={"token": forged}, transports=["websocket"])
    accepted = socketio.AsyncClient(reconnection=False)
    await accepted.connect(server.http, namespaces=["/device"], auth={"token": token}, transports=["websocket"])
    answers.append(json.dumps(await accepted.call("envelope", {"edge_device_id": device.id}, namespace="/device")))
    await accepted.disconnect()
    return answers


def _mqtt_failures(server, device, wrong_key: str) -> list[str]:
    wrong = Camera(device.id, server.mqtt_port, wrong_key).connect(subscribe=False)
    wrong.close()
    assert wrong.connect_rc.is_failure
    camera = Camera(device.id, server.mqtt_port, device.issued.key).connect()
    try:
        bad = envelope(device.id, protocol="mqtt", timestamp="yesterday")
        camera.publish(bad)
        return [json.dumps(camera.wait_ack(bad["message_id"]))]
    finally:
        camera.close()


@pytest.mark.slow
def test_no_secret_reaches_the_logs_the_refusal_records_or_the_answers(security_server):
    device, signing = DeviceFactory(), DeviceFactory(require_signature=True)
    secrets, answers = drive_failures(security_server, device, signing)

    assert len(answers) == 14 and all(answers)
    assert leaked("\n".join(answers), secrets) == []
    refusals = "\n".join(f"{r.detail} {r.excerpt} {r.message_id}" for r in RejectedMessage.objects.all())
    assert RejectedMessage.objects.count() >= 10
    assert leaked(refusals, secrets) == []
    log = security_server.log()
    assert "/api/v1/compat/openalpr/?key=[redacted]" in log  # the access log is on, and masks the query's key
    assert leaked(log, secrets) == []


def test_in_process_loggers_never_see_a_key_or_payload_key(caplog, camera, device):
    caplog.set_level(logging.DEBUG)
    secrets = {"device key": device.issued.key, "payload key": device.issued.payload_key}
    client = Client()
    client.post("/api/v1/ingest/", "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Device {device.issued.key[:-1]}")
    client.post(f"/api/v1/compat/openalpr/?key={device.issued.key}", "[]", content_type="application/json")
    camera.ingest(envelope(device.id, payload="gAAAA-not-a-token", metadata={"encryption": "fernet"}))
    assert "Unauthorized" in caplog.text or "Bad Request" in caplog.text
    assert leaked(caplog.text, secrets) == []
