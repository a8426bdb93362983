"""The operator API: detections and devices for people and their scripts."""

import base64
from datetime import datetime, timedelta, timezone

import pytest
from django.test import Client
from lpr_server import tokens

from tests.factories import DeviceFactory, OperatorFactory, envelope

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator():
    return OperatorFactory()


@pytest.fixture
def logged_in(operator):
    client = Client()
    client.force_login(operator)
    return client


def _ingest(camera, plate: str, at: datetime):
    env = envelope(camera.device.id, payload={"plate": plate, "confidence": 0.9}, timestamp=at.isoformat())
    assert camera.ingest(env).status_code == 201


def test_detections_need_a_login(device):
    response = Client().get("/api/v1/detections/")
    assert (response.status_code, response.json()["error"]) == (401, "unauthenticated")


def test_detections_filter_by_exact_plate_device_and_time(camera, logged_in):
    from conftest import CameraClient

    other = CameraClient(DeviceFactory())
    now = datetime.now(timezone.utc)
    _ingest(camera, "AB-123-CD", now - timedelta(hours=2))
    _ingest(camera, "AB123CE", now - timedelta(hours=1))
    _ingest(other, "ab 123 cd", now - timedelta(minutes=5))

    by_plate = logged_in.get("/api/v1/detections/", {"plate": "ab123cd"}).json()
    assert by_plate["count"] == 2
    assert {r["device"] for r in by_plate["results"]} == {camera.device.id, other.device.id}

    by_device = logged_in.get("/api/v1/detections/", {"plate": "AB123CD", "device": other.device.id}).json()
    assert [r["plate"] for r in by_device["results"]] == ["ab 123 cd"]

    since = (now - timedelta(minutes=90)).isoformat()
    until = (now - timedelta(minutes=30)).isoformat()
    windowed = logged_in.get("/api/v1/detections/", {"since": since, "until": until}).json()
    assert [r["plate"] for r in windowed["results"]] == ["AB123CE"]


def test_detections_are_paginated_newest_first(camera, logged_in):
    now = datetime.now(timezone.utc)
    for i in range(55):
        _ingest(camera, f"P{i:03d}", now - timedelta(seconds=i))
    page = logged_in.get("/api/v1/detections/").json()
    assert set(page) == {"count", "next", "previous", "results"}
    assert page["count"] == 55 and len(page["results"]) == 50 and page["next"]
    assert page["results"][0]["plate"] == "P000"


def test_invalid_time_range_is_a_clear_error(logged_in):
    response = logged_in.get("/api/v1/detections/", {"since": "2026-02-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"})
    assert (response.status_code, response.json()["error"], response.json()["field"]) == (400, "invalid", "until")


def test_devices_list_with_basic_and_token_auth(device, operator):
    basic = "Basic " + base64.b64encode(f"{operator.username}:secret-pass-123".encode()).decode()
    listing = Client().get("/api/v1/devices/", HTTP_AUTHORIZATION=basic).json()
    assert [d["id"] for d in listing["results"]] == [device.id]
    assert "key_hash" not in listing["results"][0] and "key_encrypted" not in listing["results"][0]

    token = tokens.issue(operator)[1]
    detail = Client().get(f"/api/v1/devices/{device.id}/", HTTP_AUTHORIZATION=f"Token {token}")
    assert detail.json()["name"] == device.name


def test_health_and_schema_endpoints_answer(logged_in):
    assert Client().get("/healthz").json() == {"status": "ok"}
    assert Client().get("/readyz").status_code == 200
    assert "lpr_ingest_messages_total" in Client().get("/metrics").content.decode()
    schema = logged_in.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/detections/" in schema.content


def test_unknown_detection_is_404_not_found_in_contract_form(logged_in):
    response = logged_in.get("/api/v1/detections/999999999/")
    assert (response.status_code, response.json()["error"]) == (404, "not_found")
