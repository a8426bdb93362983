"""Watchlist CSV import/export and the operator API: permissions, bad input, acknowledgement, traffic statistics."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from detections import watchlists
from detections.alert_models import Alert, Rollup, Watchlist, WatchlistEntry
from tests.alerts.conftest import detection, make_watchlist
from tests.factories import OperatorFactory, UserFactory
from transport.pipeline import ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    client = APIClient()
    client.force_authenticate(UserFactory(is_staff=True))
    return client


@pytest.fixture
def operator():
    client = APIClient()
    client.force_authenticate(OperatorFactory())
    return client


def test_csv_import_reports_bad_rows_by_line_and_imports_the_good_ones(device):
    text = (
        "plate,match,device,priority,note,kind,active_from\n"
        "AB-123-CD,exact,,3,stolen,,\n"                     # line 2: fine
        "XY 999,lenient,nosuchcam,1,,,\n"                   # line 3: unknown device
        f"ZZ1,exact,{device.id},x,,,\n"                     # line 4: bad priority
        "GOV\\d+,exact,,1,,pattern,\n"                      # line 5: fine
        "AB[1,exact,,1,,pattern,\n"                         # line 6: does not compile
        "QQ7,fuzzy,,1,,,\n"                                 # line 7: bad mode
        "MM5,lenient,,1,,,yesterday\n"                      # line 8: bad date
        f"KL4402,lenient,{device.id},2,\"a, quoted note\",,2026-01-01T00:00:00Z\n"  # line 9: fine
    )  # fmt: skip
    report = watchlists.import_csv(make_watchlist([]), text)
    assert report.created == 3
    assert [line for line, _ in report.errors] == [3, 4, 6, 7, 8]
    assert "does not compile" in dict(report.errors)[6] and "nosuchcam" in dict(report.errors)[3]
    assert sorted(WatchlistEntry.objects.values_list("value", flat=True)) == ["AB123CD", "GOV\\d+", "KL4402"]


@pytest.mark.slow
def test_a_list_of_100000_entries_imports_exports_and_reimports_unchanged(make_device):
    device = make_device()
    lines = ["value,match,device,priority,note"] + [
        f"P{n:06d},{'lenient' if n % 2 else 'exact'},{device.id if n % 10 == 0 else ''},{n % 5},n{n}"
        for n in range(100_000)
    ]  # fmt: skip
    first = make_watchlist([], name="big")
    report = watchlists.import_csv(first, "\n".join(lines) + "\n")
    assert (report.created, report.errors) == (100_000, [])
    exported = "".join(watchlists.export_csv(first))
    second = make_watchlist([], name="copy")
    assert watchlists.import_csv(second, exported).created == 100_000
    assert "".join(watchlists.export_csv(second)) == exported
    index = watchlists.active_index()
    assert index.size == 200_000


def test_staff_manage_watchlists_operators_only_read(staff, operator):
    assert operator.post("/api/v1/watchlists/", {"name": "nope"}, format="json").status_code == 403
    created = staff.post("/api/v1/watchlists/", {"name": "hot", "notify_emails": "a@example.org"}, format="json")
    assert created.status_code == 201
    wid = created.json()["id"]
    entry = staff.post(f"/api/v1/watchlists/{wid}/entries/", {"value": "ab 12 cd", "match": "lenient"}, format="json")
    assert entry.status_code == 201 and entry.json()["value"] == "AB12CD"
    assert operator.post(f"/api/v1/watchlists/{wid}/entries/", {"value": "X1"}, format="json").status_code == 403
    listed = operator.get("/api/v1/watchlists/").json()["results"]
    assert [(w["name"], w["entries"]) for w in listed] == [("hot", 1)]


def test_bad_entries_and_bad_webhook_urls_are_clear_errors(staff):
    wid = Watchlist.objects.create(name="x").id
    bad = staff.post(f"/api/v1/watchlists/{wid}/entries/", {"kind": "pattern", "value": "(AB"}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "value" and "compile" in bad.json()["detail"]
    hook = staff.post("/api/v1/webhooks/", {"name": "h", "url": "ftp://example.org/x", "secret": "s"}, format="json")
    assert hook.status_code == 400 and hook.json()["field"] == "url" and "http" in hook.json()["detail"]
    ok = staff.post("/api/v1/webhooks/", {"name": "h", "url": "https://example.org/x", "secret": "s"}, format="json")
    assert ok.status_code == 201 and "secret" not in ok.json()


def test_csv_import_and_export_over_the_api(staff):
    wid = Watchlist.objects.create(name="csv").id
    response = staff.generic("POST", f"/api/v1/watchlists/{wid}/import/", "value,match\nAB1,exact\n,exact\nCD2,lenient\n",
                             content_type="text/csv")  # fmt: skip
    assert response.status_code == 200
    assert response.json() == {"created": 2, "errors": [{"line": 3, "error": "value: A plate needs 1 to 32 characters "
                                                                            "besides separators."}]}  # fmt: skip
    exported = b"".join(staff.get(f"/api/v1/watchlists/{wid}/export/").streaming_content).decode()
    assert exported.splitlines()[0] == ",".join(watchlists.CSV_FIELDS) and len(exported.splitlines()) == 3


def test_operators_list_and_acknowledge_alerts(operator, device):
    from detections import alerts

    make_watchlist([{"value": "ACK001"}])
    env = detection(device.id, "ACK001")
    ingest(env, device, "rest")
    alert = alerts.match([env["message_id"]])[0]
    assert [a["id"] for a in operator.get("/api/v1/alerts/?acknowledged=false").json()["results"]] == [alert.id]
    acked = operator.post(f"/api/v1/alerts/{alert.id}/ack/", {"comment": "patrol sent"}, format="json")
    assert acked.status_code == 200 and acked.json()["acknowledged_by"].startswith("operator")
    assert acked.json()["acknowledged_at"] and Alert.objects.get().ack_comment == "patrol sent"
    assert operator.post(f"/api/v1/alerts/{alert.id}/ack/", {}, format="json").status_code == 409
    assert operator.get("/api/v1/alerts/?acknowledged=false").json()["results"] == []
    assert operator.post("/api/v1/alerts/999999/ack/", {}, format="json").status_code == 404


def test_traffic_statistics_read_rollups(operator, device):
    from datetime import datetime, timezone

    start = datetime(2026, 11, 3, 10, tzinfo=timezone.utc)
    Rollup.objects.create(period="hour", start=start, device_id=device.id, protocol="mqtt", detections=42,
                          unique_plates=40, accepted=50, rejected=1, latency_p50_ms=20.0, latency_p95_ms=80.0)  # fmt: skip
    rows = operator.get("/api/v1/stats/traffic/", {"period": "hour", "device": device.id}).json()["results"]
    assert [(r["protocol"], r["detections"], r["unique_plates"], r["latency_p95_ms"]) for r in rows] == [
        ("mqtt", 42, 40, 80.0)]  # fmt: skip
    assert operator.get("/api/v1/stats/traffic/", {"period": "week"}).status_code == 400


def test_staff_re_enabling_a_disabled_webhook_starts_it_afresh(staff):
    from detections.alert_models import Webhook

    hook = Webhook.objects.create(name="h", url="http://127.0.0.1:9/x", secret="s", active=False, failed_deliveries=5,
                                  disabled_reason="5 deliveries in a row failed")  # fmt: skip
    response = staff.patch(f"/api/v1/webhooks/{hook.id}/", {"active": True}, format="json")
    assert response.status_code == 200
    hook.refresh_from_db()
    assert (hook.active, hook.failed_deliveries, hook.disabled_reason) == (True, 0, "")


@pytest.mark.parametrize("model", ["watchlist", "watchlistentry", "alert", "webhook", "delivery", "rollup"])
def test_admin_pages_render(client, model, device):
    from detections import alerts

    make_watchlist([{"value": "ADM001"}])
    env = detection(device.id, "ADM001")
    ingest(env, device, "rest")
    alerts.match([env["message_id"]])
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert client.get(f"/admin/detections/{model}/").status_code == 200
    assert client.get(f"/admin/detections/{model}/add/").status_code == 200


def test_admin_imports_a_csv_and_reports_bad_lines(client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    watchlist = Watchlist.objects.create(name="adm")
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert client.get(f"/admin/detections/watchlist/{watchlist.id}/import/").status_code == 200
    upload = SimpleUploadedFile("list.csv", b"plate,match\nAB1,exact\nCD2,bogus\n", content_type="text/csv")
    response = client.post(f"/admin/detections/watchlist/{watchlist.id}/import/", {"file": upload}, follow=True)
    text = response.content.decode()
    assert "1 entries imported, 1 rows refused" in text and "line 3: match" in text.lower()
    assert list(watchlist.entries.values_list("value", flat=True)) == ["AB1"]


def test_staff_delete_an_entry_and_matching_stops(staff, operator, device):
    from detections import alerts

    watchlist = make_watchlist([{"value": "DEL001"}])
    entry = watchlist.entries.get()
    assert operator.delete(f"/api/v1/watchlists/{watchlist.id}/entries/{entry.id}/").status_code == 403
    assert staff.delete(f"/api/v1/watchlists/{watchlist.id}/entries/{entry.id}/").status_code == 204
    assert staff.delete(f"/api/v1/watchlists/{watchlist.id}/entries/{entry.id}/").status_code == 404
    env = detection(device.id, "DEL001")
    ingest(env, device, "rest")
    assert alerts.match([env["message_id"]]) == []
