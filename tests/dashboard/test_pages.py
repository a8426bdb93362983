"""Dashboard pages through Django's test client: who may see them, and that no page scans raw detections."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from detections.alert_models import Alert, Watchlist
from detections.models import Detection
from devices.groups import OPERATORS, ensure_operators_group
from tests.factories import UserFactory, envelope
from transport.pipeline import ingest

pytestmark = pytest.mark.django_db

PAGES = ["dashboard:overview", "dashboard:devices", "dashboard:detections", "dashboard:alerts", "dashboard:analytics"]


@pytest.fixture
def operator_client(client):
    user = UserFactory()
    user.groups.add(ensure_operators_group())
    client.force_login(user)
    return client


@pytest.mark.parametrize("name", PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_signed_in_people_outside_operators_and_staff_are_refused(client):
    client.force_login(UserFactory())
    assert client.get(reverse("dashboard:overview")).status_code == 403


def test_staff_and_operators_see_every_page(operator_client, client, device):
    staff = UserFactory(is_staff=True)
    other = type(client)()
    other.force_login(staff)
    for c in (operator_client, other):
        for name in PAGES:
            assert c.get(reverse(name)).status_code == 200, name
        assert c.get(reverse("dashboard:device", args=[device.id])).status_code == 200


def test_login_page_logs_in_and_lands_on_the_overview(client):
    UserFactory(username="ana", is_staff=True)
    page = client.get("/accounts/login/?next=/")
    assert b'name="username"' in page.content
    response = client.post("/accounts/login/", {"username": "ana", "password": "secret-pass-123", "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert b"Live detections" in client.get("/").content


def test_no_page_reads_detections_without_a_limit(operator_client, device):
    """Figures come from rollups and indexed, limited queries: a page never counts or scans the detections table."""
    for i in range(3):
        ingest(envelope(device.id, payload={"plate": f"AB{i}23CD", "confidence": 0.9}), device, "rest")
    table = Detection._meta.db_table
    urls = [reverse(n) for n in PAGES] + [reverse("dashboard:device", args=[device.id]),
                                          reverse("dashboard:detections") + "?plate=AB123CD&match=fuzzy"]
    for url in urls:
        with CaptureQueriesContext(connection) as queries:
            assert operator_client.get(url).status_code == 200
        for q in queries.captured_queries:
            sql = q["sql"]
            if re.search(rf'FROM "{table}"', sql) and "INSERT" not in sql:
                assert "LIMIT" in sql or " IN (" in sql or "= ANY" in sql, f"{url} read detections unbounded: {sql}"


def test_the_search_form_shows_the_errors_of_the_operator_api(operator_client):
    response = operator_client.get(reverse("dashboard:detections"), {"plate": "*", "match": "wildcard"})
    assert b"this pattern would match everything" in response.content


def test_acknowledge_without_javascript_redirects_back_and_records_who(operator_client, device):
    watchlist = Watchlist.objects.create(name="stolen")
    alert = Alert.objects.create(watchlist=watchlist, device=device, plate="AB123CD", matched="AB123CD",
                                 captured_at="2026-11-26T10:00:00Z")  # fmt: skip
    response = operator_client.post(reverse("dashboard:alert-ack", args=[alert.id]), {"next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None and alert.acknowledged_by.groups.filter(name=OPERATORS).exists()
    again = operator_client.post(reverse("dashboard:alert-ack", args=[alert.id]), HTTP_ACCEPT="application/json")
    assert again.json()["acknowledged"] is False
    assert operator_client.post(reverse("dashboard:alert-ack", args=[alert.id + 1000])).status_code == 404


def test_csv_export_streams_the_searched_reads(operator_client, device):
    ingest(envelope(device.id, payload={"plate": "XY987ZZ", "confidence": 0.9}), device, "rest")
    ingest(envelope(device.id, payload={"plate": "AB123CD", "confidence": 0.9}), device, "rest")
    response = operator_client.get(reverse("dashboard:detections-csv"), {"plate": "XY987ZZ"})
    body = b"".join(response.streaming_content).decode()
    assert "XY987ZZ" in body and "AB123CD" not in body

