"""CSV export: streamed in chunks, so a large export keeps memory flat."""

import csv
import io
import tracemalloc
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import AsyncClient, Client

from detections import export
from detections.search import Query, search
from tests.factories import DeviceFactory, OperatorFactory

from .helpers import T0, ingest

pytestmark = pytest.mark.django_db

ROWS = 100_000
PEAK_LIMIT = 8 * 2**20  # the CSV alone is ~13 MiB; its rows held as Python objects, far more


def _seed(device, rows: int) -> None:
    """Many detections at once, in SQL: the pipeline is not what is under test here."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO detections_detection (message_id, device_id, plate, plate_normalized, confidence, region,
                candidates, vehicle, bbox, direction, captured_at, received_at, received_via, protocol, extra, search_text)
            SELECT md5(i::text)::uuid, %s, 'AB' || i, 'AB' || i, 0.9, 'de', '[]', '{"type": "car", "color": "red"}',
                NULL, 'approaching', %s - i * interval '1 second', now(), 'rest', 'rest', '{}', 'AB' || i
            FROM generate_series(1, %s) AS i
            """,
            [device.id, T0, rows],
        )


def test_export_of_100000_rows_streams_with_flat_memory():
    device = DeviceFactory()
    _seed(device, ROWS)
    tracemalloc.start()
    try:
        count, size = 0, 0
        for line in export.lines(search(Query(device=device.id))):
            count += 1
            size += len(line)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == ROWS + 1  # and the header
    assert size > PEAK_LIMIT  # holding the export (or its rows) at once could not stay under the bound...
    print(f"CSV export of {ROWS} rows ({size / 2**20:.1f} MiB): peak traced memory {peak / 2**20:.1f} MiB")
    assert peak < PEAK_LIMIT, f"peak {peak / 2**20:.1f} MiB"  # ...and memory stays at about one chunk


def test_api_exports_the_search_as_streamed_csv():
    device, other = DeviceFactory(), DeviceFactory()
    ingest(device, "AB-123-CD", timedelta(0), vehicle={"type": "car", "color": "red"})
    ingest(device, "=HYPERLINK(1)", timedelta(minutes=1))
    ingest(other, "AB123CD", timedelta(minutes=2))
    client = Client()
    client.force_login(OperatorFactory())
    response = client.get("/api/v1/detections/", {"device": device.id, "format": "csv"})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["plate"] for r in rows] == ["'=HYPERLINK(1)", "AB-123-CD"]  # newest first; formulas defused
    assert (rows[1]["plate_normalized"], rows[1]["vehicle_type"], rows[1]["color"]) == ("AB123CD", "car", "red")
    assert rows[1]["passage"] and rows[1]["device"] == device.id
    refused = client.get("/api/v1/detections/", {"plate": "*", "match": "wildcard", "format": "csv"})
    assert (refused.status_code, refused.json()["field"]) == (400, "plate")


def test_under_asgi_the_export_is_an_async_stream():
    device = DeviceFactory()
    for n in range(3):
        ingest(device, f"AB12{n}", timedelta(minutes=n))
    client = AsyncClient()
    client.force_login(OperatorFactory())
    response = async_to_sync(client.get)("/api/v1/detections/", {"format": "csv"})
    assert response.status_code == 200 and response.is_async  # Django would otherwise buffer a sync iterator

    async def body():
        return b"".join([part async for part in response.streaming_content])

    lines = async_to_sync(body)().decode().splitlines()
    assert len(lines) == 4 and lines[1].split(",")[4] == "AB122"


def test_admin_action_exports_the_selected_detections(admin_client):
    device = DeviceFactory()
    ids = [ingest(device, p, timedelta(minutes=n)) for n, p in enumerate(["AB1", "AB2", "AB3"])]
    from detections.models import Detection

    chosen = list(Detection.objects.filter(message_id__in=ids[:2]).values_list("id", flat=True))
    response = admin_client.post("/admin/detections/detection/", {"action": "export_csv", "_selected_action": chosen})
    assert response.status_code == 200
    plates = [r["plate"] for r in csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))]
    assert plates == ["AB2", "AB1"]
