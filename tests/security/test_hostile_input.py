"""Input the fuzzers found answered with a 500, each now refused or handled: NUL (U+0000), which PostgreSQL cannot
store in text or jsonb, wherever a camera or a person can put one (a 400, nothing stored), and CSV that the csv
module cannot read."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from detections.alert_models import Watchlist, WatchlistEntry
from devices.models import Command
from tests.factories import UserFactory
from transport.models import RejectedMessage

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    client = Client()
    client.force_login(UserFactory(is_staff=True))
    return client


def test_a_batch_item_with_nul_in_its_message_id_is_rejected_and_recorded(camera, device):
    response = camera.post("/api/v1/ingest/batch/", {"messages": [{"message_id": "a\u0000b"}]})
    assert response.status_code == 200
    assert response.json()["results"][0]["status"] == "rejected"
    assert RejectedMessage.objects.get(device=device).message_id == "a\ufffdb"


@pytest.mark.parametrize("path, body", [
    ("devices/{device}/config/", {"values": {"fps": "1\u0000"}}),
    ("devices/{device}/commands/", {"action": "capture", "params": {"lane": ["\u0000"]}}),
    ("watchlists/{watchlist}/entries/", {"value": "AB123CD", "device": "\u0000"}),
])  # fmt: skip
@pytest.mark.parametrize("encoding", ["json", "multipart"])
def test_operator_input_with_nul_is_invalid(staff, device, path, body, encoding):
    watchlist = Watchlist.objects.create(name="w")
    url = "/api/v1/" + path.format(device=device.id, watchlist=watchlist.id)
    if encoding == "json":
        response = staff.post(url, body, content_type="application/json")
    else:
        response = staff.post(url, {k: json.dumps(v) if isinstance(v, dict) else v for k, v in body.items()})
    assert (response.status_code, response.json()["error"]) == (400, "invalid")
    device.refresh_from_db()
    assert device.desired_config_version == 0 and not Command.objects.exists() and not WatchlistEntry.objects.exists()


def test_the_domain_refuses_nul_whoever_calls_it(device):
    from devices import commands, configuration

    with pytest.raises(configuration.ConfigError):
        configuration.set_desired(device, {"a": "\u0000"})
    with pytest.raises(commands.CommandError):
        commands.check_request("capture", {"\u0000": 1}, 60)


def test_a_watchlist_csv_line_with_nul_is_reported_and_the_others_imported(staff):
    watchlist = Watchlist.objects.create(name="w")
    response = staff.post(f"/api/v1/watchlists/{watchlist.id}/import/", "value\nAB\x00C\nXY123\n", content_type="text/csv")
    assert response.status_code == 200
    assert response.json()["created"] == 1 and "NUL" in str(response.json()["errors"])
    assert list(WatchlistEntry.objects.values_list("value", flat=True)) == ["XY123"]


@pytest.mark.parametrize("url", ["/api/v1/devices/CAM%00/", "/api/v1/stats/devices/?device=%00",
                                 "/api/v1/compat/openalpr/?key=%00", "/dashboard/detections/?plate=A%00"])  # fmt: skip
def test_a_url_with_nul_is_a_bad_request(staff, url):
    response = staff.get(url)
    assert response.status_code == 400
    if url.startswith("/api/"):
        assert response.json()["error"] == "invalid"


@pytest.mark.parametrize("body", ["value\nAB1\nA\u00e9\r\u00e9B\n", 'value\n"AB1\nAB2', "value\r\nAB1\rAB2\n"])
def test_a_watchlist_csv_the_csv_module_cannot_read_is_reported_not_a_500(staff, body):
    watchlist = Watchlist.objects.create(name="w")
    response = staff.post(f"/api/v1/watchlists/{watchlist.id}/import/", body.encode(), content_type="text/csv")
    assert response.status_code == 200
    report = response.json()
    assert report["created"] == WatchlistEntry.objects.filter(watchlist=watchlist).count()


def test_an_alert_acknowledged_from_the_dashboard_with_nul_in_its_comment_is_stored(device):
    from detections.alert_models import Alert
    from tests.factories import OperatorFactory, envelope
    from transport.pipeline import ingest

    ingest(envelope(device.id), device, "rest")
    from detections.models import Detection

    detection = Detection.objects.get(device=device)
    alert = Alert.objects.create(watchlist=Watchlist.objects.create(name="w"), detection=detection, device=device,
                                 plate="AB123CD", matched="AB123CD", captured_at=detection.captured_at)  # fmt: skip
    client = Client()
    client.force_login(OperatorFactory())
    assert client.post(f"/dashboard/alerts/{alert.id}/ack/", {"comment": "seen\x00"}).status_code == 302
    alert.refresh_from_db()
    assert alert.ack_comment == "seen\ufffd"
