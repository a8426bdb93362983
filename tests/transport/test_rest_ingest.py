"""REST ingest end to end (through Django's URL routing and views) against real PostgreSQL."""

import base64
import gzip
import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.test import Client

from conftest import CameraClient
from detections.models import Detection
from devices.models import HealthLog, ReportedConfig
from tests.factories import envelope
from transport import auth
from transport.models import Message, RejectedMessage

pytestmark = pytest.mark.django_db


def test_detection_is_stored_with_plate_normalised_and_unknown_fields_kept(camera, device):
    env = envelope(device.id, payload={
        "plate": "ab-123 cd", "confidence": 0.91, "region": "de", "candidates": [{"plate": "AB123C0", "confidence": 0.4}],
        "bbox": {"x": 10, "y": 20, "w": 100, "h": 40}, "vehicle": {"type": "car", "color": "red"},
        "direction": "approaching", "speed_kph": 48.5, "lane": 2, "make_guess": "Volvo",
    }, sequence=42)  # fmt: skip
    response = camera.ingest(env)
    assert response.status_code == 201
    assert response.json() == {"message_id": env["message_id"], "status": "accepted"}
    d = Detection.objects.get(message_id=env["message_id"])
    assert (d.plate, d.plate_normalized, d.device_id, d.region) == ("ab-123 cd", "AB123CD", device.id, "de")
    assert d.candidates == [{"plate": "AB123C0", "confidence": 0.4}]
    assert d.bbox == {"x": 10, "y": 20, "w": 100, "h": 40}
    assert (d.direction, d.speed_kph, d.lane, d.received_via, d.protocol) == ("approaching", 48.5, 2, "rest", "rest")
    assert d.extra == {"make_guess": "Volvo"}
    assert d.latency_ms is not None and d.latency_ms >= 0
    ledger = Message.objects.get(message_id=env["message_id"])
    assert (ledger.data_type, ledger.sequence) == ("detection", 42)
    device.refresh_from_db()
    assert device.last_transport == "rest" and device.last_seen_at is not None


def test_claimed_protocol_is_recorded_apart_from_the_transport_used(camera, device):
    env = envelope(device.id, protocol="mqtt")  # queued offline for MQTT, flushed over REST
    assert camera.ingest(env).status_code == 201
    d = Detection.objects.get(message_id=env["message_id"])
    assert (d.protocol, d.received_via) == ("mqtt", "rest")


def test_health_is_stored_and_firmware_recorded(camera, device):
    env = envelope(device.id, "health", payload={
        "cpu_percent": 55, "temperature_c": 61.5, "firmware": "2.4.1", "queue_depth": 3,
        "network": {"latency_ms": 80, "bandwidth_kbps": 900, "packet_loss": 0.01, "uptime_percent": 99.5},
    })  # fmt: skip
    assert camera.ingest(env).status_code == 201
    h = HealthLog.objects.get(message_id=env["message_id"])
    assert (h.cpu_percent, h.temperature_c, h.latency_ms, h.packet_loss, h.queue_depth) == (55, 61.5, 80, 0.01, 3)
    device.refresh_from_db()
    assert device.firmware == "2.4.1"


def test_every_reported_config_version_is_kept(camera, device):
    for version in (1, 2):
        env = envelope(device.id, "config", payload={"version": version, "values": {"fps": 10 * version}})
        assert camera.ingest(env).status_code == 201
    assert list(ReportedConfig.objects.filter(device=device).values_list("version", "values")) == [
        (2, {"fps": 20}),
        (1, {"fps": 10}),
    ]


def test_control_payload_moves_the_command_state(camera, device):
    from devices.commands import issue

    command = issue(device, "reboot")
    env = envelope(device.id, "control", payload={"command_id": str(command.id), "status": "done", "result": {"ok": True}})
    assert camera.ingest(env).status_code == 201
    command.refresh_from_db()
    assert (command.state, command.result) == ("done", {"ok": True})
    assert list(command.transitions.values_list("state", "transport")) == [("queued", ""), ("done", "rest")]


def test_control_for_another_devices_command_is_refused(camera, device, make_device):
    from devices.commands import issue

    command = issue(make_device(), "reboot")
    env = envelope(device.id, "control", payload={"command_id": str(command.id), "status": "done"})
    response = camera.ingest(env)
    assert response.status_code == 400 and response.json()["field"] == "payload.command_id"
    command.refresh_from_db()
    assert command.state == "queued"
    assert not Message.objects.filter(message_id=env["message_id"]).exists()


def test_same_message_id_twice_is_stored_once_and_answered_duplicate(camera, device):
    env = envelope(device.id)
    assert camera.ingest(env).status_code == 201
    second = camera.ingest(env)
    assert second.status_code == 200
    assert second.json() == {"message_id": env["message_id"], "status": "duplicate"}
    assert Detection.objects.filter(message_id=env["message_id"]).count() == 1


@pytest.mark.django_db(transaction=True)
def test_same_message_id_sent_concurrently_from_two_threads_is_stored_once(make_device):
    device = make_device()
    for _ in range(5):
        env = envelope(device.id)
        barrier = threading.Barrier(2)
        statuses = []

        def send():
            client = CameraClient(device, Client())
            barrier.wait()
            statuses.append(client.ingest(env).status_code)
            connection.close()

        threads = [threading.Thread(target=send) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200, 201]
        assert Detection.objects.filter(message_id=env["message_id"]).count() == 1
        assert Message.objects.filter(message_id=env["message_id"]).count() == 1


def _gzip(payload: dict) -> str:
    return base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()


def test_gzip_and_fernet_payloads_are_decoded(camera, device):
    gz = envelope(device.id, payload=_gzip({"plate": "GZ 1", "confidence": 0.5}))
    gz["metadata"]["compression"] = "gzip"
    fernet = Fernet(device.issued.payload_key.encode())
    enc = envelope(device.id, payload=fernet.encrypt(_gzip({"plate": "FE 2", "confidence": 0.6}).encode()).decode())
    enc["metadata"].update(compression="gzip", encryption="fernet")
    assert camera.ingest(gz).status_code == 201
    assert camera.ingest(enc).status_code == 201
    assert set(Detection.objects.values_list("plate_normalized", flat=True)) == {"GZ1", "FE2"}


def _future() -> str:
    return (datetime.now(timezone.utc) + timedelta(hours=25)).isoformat()


BAD_ENVELOPES = [
    ("malformed json", lambda e: b'{"message_id": "x", ', 400, "invalid"),
    ("missing field", lambda e: {k: v for k, v in e.items() if k != "timestamp"}, 400, "invalid"),
    ("wrong type", lambda e: {**e, "payload": {"plate": 123, "confidence": 0.5}}, 400, "invalid"),
    ("unknown data type", lambda e: {**e, "data_type": "telemetry"}, 400, "invalid"),
    ("not gzip", lambda e: {**e, "payload": "bm90IGd6aXA=", "metadata": {"compression": "gzip"}}, 400, "invalid"),
    ("not fernet", lambda e: {**e, "payload": "gAAAAAbad", "metadata": {"encryption": "fernet"}}, 400, "invalid"),
    ("clock 25 h ahead", lambda e: {**e, "timestamp": _future()}, 400, "invalid"),
    ("over 256 KiB", lambda e: {**e, "payload": {"plate": "X", "confidence": 0.5, "pad": "x" * 262_144}}, 413, "too_large"),
    ("spoofed device", lambda e: {**e, "edge_device_id": "SOMEONE-ELSE"}, 403, "forbidden"),
]


@pytest.mark.parametrize("name, mutate, status, code", BAD_ENVELOPES, ids=[b[0] for b in BAD_ENVELOPES])
def test_bad_input_gets_its_code_and_stores_nothing_but_the_rejection(camera, device, name, mutate, status, code):
    body = mutate(envelope(device.id))
    response = camera.ingest(body)
    assert response.status_code == status
    assert response.json()["error"] == code
    assert response.json()["detail"]
    assert Detection.objects.count() == 0 and Message.objects.count() == 0
    rejected = RejectedMessage.objects.get()
    assert (rejected.error, rejected.transport) == (code, "rest")
    assert len(rejected.excerpt) <= RejectedMessage.EXCERPT_CHARS


@pytest.mark.parametrize(
    "header, status, code",
    [
        (None, 401, "unauthenticated"),
        ("Device lpr_not-a-real-key", 401, "unauthenticated"),
        ("Bearer something", 401, "unauthenticated"),
    ],
)
def test_missing_or_wrong_key_is_refused_and_recorded(device, header, status, code):
    headers = {"HTTP_AUTHORIZATION": header} if header else {}
    response = Client().post("/api/v1/ingest/", json.dumps(envelope(device.id)), content_type="application/json", **headers)
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert Detection.objects.count() == 0
    assert RejectedMessage.objects.get().error == code


def test_inactive_device_is_forbidden(camera, device):
    device.active = False
    device.save()
    response = camera.ingest(envelope(device.id))
    assert (response.status_code, response.json()["error"]) == (403, "forbidden")
    assert Detection.objects.count() == 0


def test_wrong_content_type_is_unsupported(camera, device):
    response = camera.post("/api/v1/ingest/", json.dumps(envelope(device.id)), content_type="text/xml")
    assert (response.status_code, response.json()["error"]) == (415, "unsupported_media_type")


def _signed_headers(key: str, body: bytes, ts: int | None = None) -> dict:
    ts = str(ts if ts is not None else int(time.time()))
    return {"HTTP_X_TIMESTAMP": ts, "HTTP_X_SIGNATURE": "sha256=" + auth.sign(key, ts, body)}


def test_signature_is_enforced_only_for_devices_that_require_it(make_device):
    relaxed, strict = make_device(), make_device(require_signature=True)
    assert CameraClient(relaxed).ingest(envelope(relaxed.id)).status_code == 201

    strict_client = CameraClient(strict)
    unsigned = strict_client.ingest(envelope(strict.id))
    assert (unsigned.status_code, unsigned.json()["error"]) == (401, "unauthenticated")

    body = json.dumps(envelope(strict.id)).encode()
    assert strict_client.post("/api/v1/ingest/", body, **_signed_headers(strict.issued.key, body)).status_code == 201

    wrong = _signed_headers("lpr_some-other-key", body)
    assert strict_client.post("/api/v1/ingest/", body, **wrong).status_code == 401
    stale = _signed_headers(strict.issued.key, body, ts=int(time.time()) - 301)
    assert strict_client.post("/api/v1/ingest/", body, **stale).status_code == 401
    tampered = _signed_headers(strict.issued.key, body)
    assert strict_client.post("/api/v1/ingest/", body.replace(b"AB123CD", b"ZZ999ZZ"), **tampered).status_code == 401
    assert Detection.objects.filter(device=strict).count() == 1


def test_device_over_its_rate_gets_429_with_retry_after(camera, device, settings):
    settings.DEVICE_RATE_BURST = 3
    device.rate_limit_per_s = 0.5
    device.save()
    statuses = [camera.ingest(envelope(device.id)).status_code for _ in range(3)]
    throttled = camera.ingest(envelope(device.id))
    assert statuses == [201, 201, 201]
    assert throttled.status_code == 429
    assert throttled.json()["error"] == "throttled"
    assert int(throttled["Retry-After"]) >= 1
    assert Detection.objects.count() == 3


def test_batch_of_1000_is_stored_with_the_bulk_path(camera, device, django_assert_max_num_queries):
    messages = [envelope(device.id, payload={"plate": f"B{i:05d}", "confidence": 0.9}) for i in range(1000)]
    # auth, savepoint, ledger, passages (find, insert, update), detections, device touch: a fixed few, not one per row
    with django_assert_max_num_queries(10):
        response = camera.post("/api/v1/ingest/batch/", {"messages": messages})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted"] * 1000
    assert [r["message_id"] for r in results] == [m["message_id"] for m in messages]
    assert Detection.objects.filter(device=device).count() == 1000


def test_batch_with_bad_items_stores_the_good_ones_and_reports_each(camera, device):
    good, dup = envelope(device.id), envelope(device.id)
    camera.ingest(dup)
    bad = envelope(device.id, payload={"plate": "X"})
    spoof = envelope("OTHER", payload={"plate": "Y", "confidence": 0.5})
    response = camera.post("/api/v1/ingest/batch/", {"messages": [good, bad, dup, spoof, good]})
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "duplicate", "rejected", "duplicate"]
    assert (results[1]["error"], results[3]["error"]) == ("invalid", "forbidden")
    assert Detection.objects.count() == 2


def test_batch_over_1000_messages_is_refused(camera, device):
    messages = [envelope(device.id) for _ in range(1001)]
    response = camera.post("/api/v1/ingest/batch/", {"messages": messages})
    assert (response.status_code, response.json()["error"]) == (413, "too_large")
    assert Detection.objects.count() == 0


def test_batch_body_that_is_not_a_message_list_is_invalid(camera):
    response = camera.post("/api/v1/ingest/batch/", {"items": []})
    assert (response.status_code, response.json()["error"], response.json()["field"]) == (400, "invalid", "messages")


def test_storage_outage_answers_503_and_stores_nothing(camera, device, monkeypatch, both_write_paths):
    from django.db import OperationalError

    from transport import store

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    # Set-wise, the connection goes after the ledger row is written; the one-statement path has only one to fail.
    monkeypatch.setattr(store.bulk, "insert" if both_write_paths == "set-wise" else "server_cursor", down)
    response = camera.ingest(envelope(device.id))
    assert (response.status_code, response.json()["error"]) == (503, "unavailable")
    assert int(response["Retry-After"]) > 0
    assert Detection.objects.count() == 0


def test_nothing_is_announced_before_commit_and_a_failed_batch_announces_nothing(camera, device, monkeypatch, django_capture_on_commit_callbacks):
    from transport import announce

    seen = []
    monkeypatch.setattr(announce, "consumers", [lambda stored: seen.extend(s.envelope.message_id for s in stored)])
    env = envelope(device.id)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        camera.ingest(env)
    assert seen == [] and len(callbacks) == 1
    callbacks[0]()
    assert seen == [uuid.UUID(env["message_id"])]


def test_refused_binary_input_is_recorded_without_its_nul_bytes(device):
    body = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x00" + bytes(range(256))
    response = Client().post("/api/v1/ingest/", body, content_type="application/json", HTTP_AUTHORIZATION="Device nope")
    assert (response.status_code, response.json()["error"]) == (401, "unauthenticated")
    excerpt = RejectedMessage.objects.get().excerpt
    assert "\x00" not in excerpt and "JFIF" in excerpt


@pytest.mark.django_db(transaction=True)
def test_last_seen_is_kept_current_while_other_transactions_reference_the_device(camera, device):
    """Concurrent batches hold KEY SHARE on the device row (their foreign-key checks); that must not make this
    batch skip the row it only updates, or a busy camera's last_seen would go stale."""
    import psycopg

    s = connection.settings_dict
    other = psycopg.connect(host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"],
                            password=s["PASSWORD"] or None, dbname=s["NAME"])  # fmt: skip
    try:
        other.execute("SELECT 1 FROM devices_device WHERE id = %s FOR KEY SHARE", [device.id])  # held until rollback
        assert camera.ingest(envelope(device.id)).status_code == 201
        device.refresh_from_db()
        assert device.last_seen_at is not None and device.last_transport == "rest"
    finally:
        other.rollback()
        other.close()
