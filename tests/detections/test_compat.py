"""Camera vendors' webhooks: each sample and variants of it land in the right fields; a resend is a duplicate."""

import base64
import copy
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from django.test import Client

from detections.models import Detection, Image
from devices.models import HealthLog
from transport.models import Message, RejectedMessage

from .pictures import CORRUPT_JPEG, picture

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
if not SAMPLES.exists():
    SAMPLES = Path("/work/shared/samples")


def sample(name: str):
    raw = (SAMPLES / name).read_bytes()
    return raw if name.endswith(".xml") else json.loads(raw)


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def post(device, fmt: str, body, auth: str = "token", content_type: str = "application/json", **extra):
    client, path = Client(), f"/api/v1/compat/{fmt}/"
    headers = {"token": {"HTTP_AUTHORIZATION": f"Token {device.issued.key}"},
               "device": {"HTTP_AUTHORIZATION": f"Device {device.issued.key}"}, "query": {}}[auth]  # fmt: skip
    if auth == "query":
        path += f"?key={device.issued.key}"
    if content_type == "multipart":
        return client.post(path, body, **headers, **extra)
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(path, data, content_type=content_type, **headers, **extra)


def nothing_stored():
    return Detection.objects.count() == 0 and Image.objects.count() == 0 and Message.objects.count() == 0


# --- OpenALPR / Rekor ------------------------------------------------------------


@pytest.mark.parametrize("auth", ["token", "device", "query"])
def test_openalpr_group_sample_maps_to_one_detection_and_a_resend_is_a_duplicate(device, media, auth):
    body = sample("openalpr_alpr_group.json")
    first = post(device, "openalpr", body, auth)
    assert first.status_code == 201, first.content
    assert [r["status"] for r in first.json()["results"]] == ["accepted"]
    d = Detection.objects.get()
    assert (d.plate, d.plate_normalized, d.region, d.device_id) == ("D2651BF", "D2651BF", "us-mo", device.id)
    assert d.confidence == pytest.approx(0.93877, abs=1e-4)
    assert d.captured_at == datetime.fromtimestamp(1562681121.504, timezone.utc)
    assert [c["plate"] for c in d.candidates] == ["D2651F", "D265BF"]
    assert d.candidates[0]["confidence"] == pytest.approx(0.8136, abs=1e-4)
    assert d.bbox == {"x": 3266, "y": 187, "w": 219, "h": 119}
    assert (d.vehicle["type"], d.vehicle["make"], d.vehicle["model"], d.vehicle["color"]) == ("sedan-standard", "ford", "ford_focus", "black")
    assert d.direction == "85.5533"
    kept = d.extra["openalpr"]
    assert kept["camera_id"] == 1234 and kept["agent_uid"].startswith("YYYY") and kept["gps_latitude"] == pytest.approx(37.636)
    assert "vehicle_crop_jpeg" not in kept and "plate_crop_jpeg" not in kept["best_plate"]
    assert d.extra["unreadable_images"] == ["best_plate.plate_crop_jpeg", "vehicle_crop_jpeg"]  # the sample's placeholders

    again = post(device, "openalpr", body, auth)
    assert again.status_code == 200
    assert again.json()["results"] == [{"message_id": str(d.message_id), "status": "duplicate"}]
    assert Detection.objects.count() == 1


def test_openalpr_results_sample_maps_each_plate_and_a_resend_is_a_duplicate(device, media):
    body = sample("openalpr_alpr_results.json")
    assert post(device, "openalpr", body).status_code == 201
    reads = {d.plate: d for d in Detection.objects.all()}
    assert set(reads) == {"D2651BF", "CG3L5Y"}
    assert reads["CG3L5Y"].confidence == pytest.approx(0.947376, abs=1e-5)
    assert reads["CG3L5Y"].captured_at == datetime.fromtimestamp(1562681608.425, timezone.utc)
    assert reads["D2651BF"].extra["openalpr"]["result"]["region_confidence"] == 40
    assert reads["D2651BF"].extra["openalpr"]["img_width"] == 4096
    resent = post(device, "openalpr", body)
    assert [r["status"] for r in resent.json()["results"]] == ["duplicate", "duplicate"]
    assert Detection.objects.count() == 2


def test_openalpr_variants_confidence_scales_epoch_units_string_ids_and_absent_fields(device, media):
    base = sample("openalpr_alpr_group.json")
    variants = [
        ({"best_confidence": "93.5", "epoch_start": 1562681121, "best_uuid": "u-1"}, 0.935, 1562681121.0),
        ({"best_confidence": 0.81, "epoch_start": "1562681121504", "best_uuid": "u-2"}, 0.81, 1562681121.504),
        ({"best_confidence": "0.5", "epoch_start": "2019-07-09T14:05:21", "best_uuid": "u-3", "camera_id": "1234"}, 0.5, 1562681121.0),
    ]
    for changes, confidence, epoch in variants:
        body = {**copy.deepcopy(base), **changes}
        assert post(device, "openalpr", body).status_code == 201
        d = Detection.objects.get(extra__openalpr__best_uuid=changes["best_uuid"])
        assert d.confidence == pytest.approx(confidence)
        assert d.captured_at.timestamp() == pytest.approx(epoch)
    sparse = {"data_type": "alpr_group", "best_plate_number": "XY12", "best_confidence": 88, "best_uuid": "u-4",
              "epoch_start": 1562681121504, "vehicle": {}, "candidates": [], "best_region": "", "travel_direction": None}  # fmt: skip
    assert post(device, "openalpr", sparse).status_code == 201
    d = Detection.objects.get(plate="XY12")
    assert (d.region, d.candidates, d.vehicle, d.direction, d.bbox) == ("", [], {}, "", None)
    assert post(device, "openalpr", {**base, "best_uuid": "u-1"}).json()["results"][0]["status"] == "duplicate"


def test_openalpr_heartbeat_becomes_a_health_report(device):
    beat = {"data_type": "heartbeat", "agent_uid": "AGENT1", "agent_version": "2.8.101", "timestamp": 1562681700123,
            "cpu_usage_percent": 37.5, "memory_consumed_bytes": 2 * 2**30, "memory_total_bytes": 8 * 2**30,
            "disk_drive_total_bytes": 1000, "disk_drive_free_bytes": 250, "daemon_uptime_seconds": 3600,
            "beanstalk_queue_size": 3, "video_streams": [{"camera_id": 1, "fps": 10}, {"camera_id": 2, "fps": 14}]}  # fmt: skip
    assert post(device, "openalpr", beat).status_code == 201
    h = HealthLog.objects.get(device=device)
    assert (h.cpu_percent, h.memory_percent, h.disk_percent, h.uptime_s, h.fps, h.queue_depth, h.firmware) == (
        37.5, 25.0, 75.0, 3600, 12.0, 3, "2.8.101")
    assert h.extra["openalpr"]["video_streams"][1]["fps"] == 14
    assert post(device, "openalpr", beat).json()["results"][0]["status"] == "duplicate"


def test_openalpr_alert_with_its_group_is_the_same_read_as_the_group(device, media):
    group = sample("openalpr_alpr_group.json")
    alert = {"data_type": "alpr_alert", "alert_list": "Stolen", "list_type": "hotlist", "plate_number": "D2651BF",
             "group": {k: v for k, v in group.items() if k != "data_type"}}  # fmt: skip
    assert post(device, "openalpr", alert).status_code == 201
    assert Detection.objects.get().extra["openalpr"]["alert"]["alert_list"] == "Stolen"
    assert post(device, "openalpr", group).json()["results"][0]["status"] == "duplicate"
    bare = {"data_type": "alpr_alert", "plate_number": "QQ11", "confidence": 90, "epoch_time": 1562681700000}
    assert post(device, "openalpr", bare).status_code == 201


def test_openalpr_inline_crops_become_images(device, media):
    body = sample("openalpr_alpr_group.json")
    body["best_plate"]["plate_crop_jpeg"] = base64.b64encode(picture(size=(200, 60))).decode()
    body["vehicle_crop_jpeg"] = base64.b64encode(picture(size=(630, 630))).decode()
    assert post(device, "openalpr", body).status_code == 201
    d = Detection.objects.get()
    assert (d.image.kind, d.image.width, d.image.height) == ("plate", 200, 60)
    assert [i["kind"] for i in d.extra["images"]] == ["plate", "vehicle"]
    assert Image.objects.count() == 2 and all(i.thumbnail for i in Image.objects.all())
    assert post(device, "openalpr", body).status_code == 200
    assert Image.objects.count() == 2  # the resend's pictures are not kept


# --- Plate Recognizer ---------------------------------------------------------------


def test_platerecognizer_stream_sample_maps_and_a_resend_is_a_duplicate(device, media):
    body = sample("platerecognizer_stream.json")
    assert post(device, "platerecognizer", body).status_code == 201
    d = Detection.objects.get()
    assert (d.plate, d.plate_normalized, d.confidence, d.region) == ("pl8rec", "PL8REC", 0.902, "us-ca")
    assert d.captured_at == datetime(2025, 8, 11, 16, 42, 58, 740143, tzinfo=timezone.utc)
    assert d.candidates == [{"plate": "plbrec", "confidence": 0.758}]
    assert d.bbox == {"x": 337, "y": 270, "w": 75, "h": 35}
    assert (d.vehicle["type"], d.vehicle["make"], d.vehicle["model"], d.vehicle["color"]) == ("Sedan", "Porsche", "911", "red")
    assert d.direction == "210"
    assert d.extra["platerecognizer"]["hook"]["id"] == "camera-1"
    assert d.extra["platerecognizer"]["result"]["orientation"][0]["orientation"] == "Rear"
    assert post(device, "platerecognizer", body).json()["results"][0]["status"] == "duplicate"


def test_platerecognizer_snapshot_multipart_with_its_image(device, media):
    snapshot = {"hook": {"target": "http://x", "id": "cam-9", "event": "image.done"},
                "data": {"camera_id": 9, "filename": "f.jpg", "timestamp": "2025-08-11 16:42:58",
                         "results": [{"plate": "abc123", "score": "0.88", "box": {"xmin": 1, "ymin": 2, "xmax": 11, "ymax": 12},
                                      "region": {"code": "gb"}, "vehicle": {"type": "", "score": ""}}]}}  # fmt: skip
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("frame.jpg", picture(size=(1280, 720)), content_type="image/jpeg")
    response = post(device, "platerecognizer", {"json": json.dumps(snapshot), "upload": upload}, content_type="multipart")
    assert response.status_code == 201, response.content
    d = Detection.objects.get()
    assert (d.plate_normalized, d.confidence, d.region, d.vehicle) == ("ABC123", 0.88, "gb", {})
    assert d.captured_at == datetime(2025, 8, 11, 16, 42, 58, tzinfo=timezone.utc)  # no zone: UTC
    assert (d.image.kind, d.image.width, d.image.height, d.image.content_type) == ("scene", 1280, 720, "image/jpeg")


def test_platerecognizer_multipart_without_its_json_part_is_refused(device, media):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("frame.jpg", picture(), content_type="image/jpeg")
    response = post(device, "platerecognizer", {"upload": upload}, content_type="multipart")
    assert response.status_code == 400
    assert (response.json()["error"], response.json()["field"]) == ("invalid", "json")
    assert nothing_stored()
    assert RejectedMessage.objects.filter(device=device, error="invalid").exists()


# --- Hikvision -----------------------------------------------------------------------


def test_hikvision_sample_maps_and_a_resend_is_a_duplicate(device, media):
    xml = sample("hikvision_anpr.xml")
    response = post(device, "hikvision", xml, content_type="application/xml")
    assert response.status_code == 201, response.content
    d = Detection.objects.get()
    assert (d.plate, d.confidence, d.direction, d.lane) == ("PECT600", 0.97, "receding", 2)
    assert d.captured_at == datetime(2024, 1, 19, 3, 17, 19, tzinfo=timezone.utc)
    assert d.bbox == {"x": 691, "y": 397, "w": 59, "h": 34}
    assert d.vehicle == {"type": "vehicle", "color": "white"}
    kept = d.extra["hikvision"]
    assert kept["macAddress"] == "d4:e8:53:bc:4c:02" and kept["ANPR"]["plateCharBelieve"] == "99,99,99,99,99,99,99"
    assert post(device, "hikvision", xml, content_type="text/xml").json()["results"][0]["status"] == "duplicate"


def test_hikvision_multipart_with_its_pictures(device, media):
    from django.core.files.uploadedfile import SimpleUploadedFile

    xml = sample("hikvision_anpr.xml").replace(b"<UUID>2024", b"<UUID>9024")
    parts = {
        "anpr.xml": SimpleUploadedFile("anpr.xml", xml, content_type="application/xml"),
        "detectionPicture.jpg": SimpleUploadedFile("detectionPicture.jpg", picture(size=(2560, 1568)), content_type="image/jpeg"),
        "licensePlatePicture.jpg": SimpleUploadedFile("licensePlatePicture.jpg", picture("PNG", (120, 40)), content_type="image/jpeg"),
    }
    response = post(device, "hikvision", parts, content_type="multipart")
    assert response.status_code == 201, response.content
    d = Detection.objects.get()
    assert (d.image.kind, d.image.content_type, d.image.width) == ("plate", "image/png", 120)
    assert [i["kind"] for i in d.extra["images"]] == ["plate", "scene"]


def test_hikvision_events_other_than_anpr_store_nothing(device):
    xml = sample("hikvision_anpr.xml").replace(b"<eventType>ANPR</eventType>", b"<eventType>videoloss</eventType>")
    response = post(device, "hikvision", xml, content_type="application/xml")
    assert (response.status_code, response.json()) == (200, {"results": []})
    assert nothing_stored()


# --- bad input: a clear error, nothing stored ------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><EventNotificationAlert><eventType>ANPR</eventType>
<ANPR><licensePlate>&lol3;</licensePlate><confidenceLevel>90</confidenceLevel></ANPR></EventNotificationAlert>"""


@pytest.mark.parametrize(("fmt", "body", "content_type", "status", "field"), [
    ("openalpr", b"{not json", "application/json", 400, "json"),
    ("openalpr", b"[1, 2]", "application/json", 400, None),
    ("openalpr", {"data_type": "alpr_group", "best_plate_number": "AB1", "best_confidence": 250}, "application/json", 400, "best_confidence"),
    ("openalpr", {"data_type": "alpr_group", "best_confidence": 80}, "application/json", 400, "best_plate_number"),
    ("openalpr", {"data_type": "something_else"}, "application/json", 400, "data_type"),
    ("openalpr", {"data_type": "alpr_results", "uuid": "x", "results": [{"plate": "AB1", "confidence": "high"}]}, "application/json", 400, "results.0.confidence"),
    ("platerecognizer", b"<xml/>", "application/json", 400, "json"),
    ("platerecognizer", {"data": {"results": "none"}}, "application/json", 400, "data.results"),
    ("hikvision", b"<EventNotificationAlert><eventType>ANPR", "application/xml", 400, "xml"),
    ("hikvision", BILLION_LAUGHS, "application/xml", 400, "xml"),
    ("hikvision", b"<SomethingElse/>", "application/xml", 400, "xml"),
    ("hikvision", b"<EventNotificationAlert><eventType>ANPR</eventType><ANPR><licensePlate>AB1</licensePlate></ANPR></EventNotificationAlert>", "application/xml", 400, "ANPR.confidenceLevel"),
])  # fmt: skip
def test_bad_bodies_are_refused_clearly_and_nothing_is_stored(device, media, fmt, body, content_type, status, field):
    response = post(device, fmt, body, content_type=content_type)
    assert response.status_code == status, response.content
    assert response.json()["error"] == "invalid" and response.json()["detail"]
    assert response.json().get("field") == field
    assert nothing_stored()


@pytest.mark.parametrize(("data", "status", "code"), [
    (CORRUPT_JPEG, 400, "invalid"),
    (b"GIF89a" + b"\x00" * 100, 415, "unsupported_media_type"),
])  # fmt: skip
def test_a_bad_picture_refuses_the_whole_webhook(device, media, data, status, code):
    body = sample("openalpr_alpr_group.json")
    body["vehicle_crop_jpeg"] = base64.b64encode(picture()).decode()  # a good one first: it must not be kept either
    body["best_plate"]["plate_crop_jpeg"] = base64.b64encode(data).decode()
    response = post(device, "openalpr", body)
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert nothing_stored()
    assert not any(media.rglob("*.jpg"))


def test_compat_endpoints_need_the_device_key(device):
    response = Client().post("/api/v1/compat/openalpr/", b"{}", content_type="application/json")
    assert (response.status_code, response.json()["error"]) == (401, "unauthenticated")
    wrong = Client().post("/api/v1/compat/hikvision/?key=nope", b"<x/>", content_type="application/xml")
    assert wrong.status_code == 401


def test_a_frame_without_plates_is_answered_and_stores_nothing(device):
    empty = {"data_type": "alpr_results", "uuid": "frame-1", "epoch_time": 1562681608425, "results": []}
    response = post(device, "openalpr", empty)
    assert (response.status_code, response.json()) == (200, {"results": []})
    assert nothing_stored()
