"""The dashboard in a real browser (Debian's Chromium through Playwright) against a real Daphne server.

Each test logs in through the login page, drives the pages as an operator
would, and writes a screenshot of what it saw to test-artifacts/dashboard/.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from websockets.sync.client import connect as ws_connect

from tests.factories import envelope
from tests.realtime.conftest import wait_until

from .conftest import http, log_in, plate_picture, post_envelope, screenshot, upload_picture, wait_live

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.timeout(180)]

LIVE_WITHIN_MS = 2000


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


LATENCY_MS = {"websocket": 45, "socketio": 70, "rest": 140, "mqtt": 320}  # a plausible link per transport


def seed_fleet(make_device, server, reads: int = 6, alert: bool = False) -> list:
    """A small fleet in every state, with pictures, health history and traffic over every transport."""
    from detections.alert_models import Alert, Watchlist
    from devices.models import Device, HealthLog
    from transport.pipeline import ingest

    now = datetime.now(timezone.utc)
    names = [("Gate North", "north"), ("Gate South", "south"), ("Depot exit", "depot"), ("Bridge east", "bridge"),
             ("Harbour 2", "harbour"), ("Tunnel A", "tunnel"), ("Ring road 7", "ring"), ("Airport P3", "airport")]
    states = [(True, 0.93, "websocket"), (True, 0.88, "rest"), (True, 0.41, "mqtt"), (False, None, "rest"),
              (True, 0.97, "socketio"), (True, 0.35, "mqtt"), (True, 0.82, "websocket"), (False, 0.2, "mqtt")]
    devices = []
    for (name, site), (online, score, via) in zip(names, states):
        device = make_device(name=name, site=site, firmware="4.2.1")
        Device.objects.filter(pk=device.pk).update(online=online, connectivity_score=score, last_transport=via,
                                                   last_seen_at=now - timedelta(minutes=3 if online else 95))  # fmt: skip
        device.via = via
        devices.append(device)
    plates = ["KA05MN4321", "B-AX 2741", "RT86XYZ", "WM 4410K", "GX19 PLT", "AB123CD", "ZH 51420", "PO-672-LK"]
    for i in range(reads):
        device, via = devices[i % 3], ("rest", "websocket", "mqtt", "socketio")[i % 4]
        ref = upload_picture(server, device, plates[i % len(plates)])
        sent = datetime.now(timezone.utc) - timedelta(milliseconds=LATENCY_MS[via] * (1 + (i % 3) / 4))
        env = envelope(device.id, payload={"plate": plates[i % len(plates)], "confidence": 0.8 + i / 50,
                                           "image_ref": ref}, timestamp=iso(sent))  # fmt: skip
        ingest(json.dumps(env).encode(), device, via)
    for k, device in enumerate(devices):  # this hour's reports, over each device's own transport
        for n in range(3):
            sent = datetime.now(timezone.utc) - timedelta(milliseconds=LATENCY_MS[device.via] * (1 + (k + n) % 4 / 3))
            health = {"cpu_percent": 30.0 + k, "temperature_c": 40.0, "network": {"latency_ms": 50 + 10 * k, "packet_loss": 0.01}}
            ingest(json.dumps(envelope(device.id, "health", health, timestamp=iso(sent))).encode(), device, device.via)
    ingest(b'{"message_id": "not-a-uuid"}', devices[2], "mqtt")  # one refused message: MQTT's success rate dips
    HealthLog.objects.bulk_create(
        HealthLog(device=devices[0], message_id=uuid.uuid4(), reported_at=now - timedelta(minutes=30 * k),
                  received_at=now - timedelta(minutes=30 * k), received_via="websocket",
                  cpu_percent=35 + 20 * ((k * 7) % 10) / 10, temperature_c=38 + (k % 12) / 2,
                  latency_ms=40 + (k * 13) % 90, packet_loss=((k * 3) % 5) / 200)
        for k in range(1, 48)
    )  # a day of history, straight into the table the charts read
    if alert:
        watchlist = Watchlist.objects.create(name="Stolen vehicles")
        Alert.objects.create(watchlist=watchlist, device=devices[2], plate="RT86XYZ", matched="RT86XYZ", priority=3,
                             captured_at=now, note="reported stolen 24 Nov")  # fmt: skip
    return devices


def test_an_anonymous_visitor_is_sent_to_the_login_page(page):
    for path in ("/", "/dashboard/devices/", "/dashboard/detections/?plate=AB123CD"):
        page.goto(path)
        assert "/accounts/login/" in page.url
        assert page.locator("#id_username").is_visible()
    screenshot(page, "login")


def test_detection_over_rest_appears_in_the_live_feed_without_reload(page, operator, make_device, dash_server):
    devices = seed_fleet(make_device, dash_server, alert=True)
    log_in(page, operator)
    assert page.locator(".feed-item").count() == 6  # the seeded reads, rendered by the server
    wait_live(page)
    page.evaluate("window.__loadedOnce = true")

    ref = upload_picture(dash_server, devices[0], "NEW 4711")
    env = envelope(devices[0].id, payload={"plate": "NEW 4711", "confidence": 0.97, "image_ref": ref})
    post_envelope(dash_server, devices[0], env)
    item = page.wait_for_selector(f'[data-message="{env["message_id"]}"]', timeout=LIVE_WITHIN_MS)

    assert item.query_selector(".plate").inner_text() == "NEW 4711"
    assert devices[0].name in item.inner_text() and "rest" in item.inner_text()
    assert page.evaluate("window.__loadedOnce") is True  # the same page: no reload
    assert page.locator(".feed-item").first.get_attribute("data-message") == env["message_id"]
    page.wait_for_function("document.querySelector('#feed .thumb').naturalWidth > 0")  # the crop loaded
    assert page.inner_text("#count-online") == "4" and page.inner_text("#count-degraded") == "2"
    assert page.inner_text("#count-offline") == "2" and page.inner_text("#count-alerts") == "1"
    page.wait_for_timeout(600)  # charts finish animating
    screenshot(page, "overview", full_page=False)
    for name, size in {"laptop": (1280, 800), "wall": (2560, 1440), "narrow": (800, 1000)}.items():
        page.set_viewport_size({"width": size[0], "height": size[1]})
        page.wait_for_timeout(400)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # nothing runs off the side
        screenshot(page, f"overview-{name}", full_page=False)


def test_detection_over_mqtt_appears_in_the_live_feed(page, operator, make_device, dash_server, tmp_path):
    from tests.mqtt.conftest import BridgeProcess, Camera

    device = make_device(name="Harbour gate")
    bridge = BridgeProcess(tmp_path, "mqtt://127.0.0.1:1883", f"lpr-dashboard-test-{uuid.uuid4().hex[:8]}")
    camera = None
    try:
        bridge.wait_subscribed()
        log_in(page, operator)
        wait_live(page)
        page.evaluate("window.__loadedOnce = true")
        camera = Camera(device.id).connect()
        env = envelope(device.id, payload={"plate": "MQ 2026", "confidence": 0.9}, protocol="mqtt")
        camera.publish(env)
        camera.wait_ack(env["message_id"], timeout=10)  # stored and committed by the bridge
        item = page.wait_for_selector(f'[data-message="{env["message_id"]}"]', timeout=LIVE_WITHIN_MS)
        assert "MQ 2026" in item.inner_text() and "mqtt" in item.inner_text()
        assert page.evaluate("window.__loadedOnce") is True
    finally:
        if camera is not None:
            camera.close()
        bridge.terminate()


def test_a_plate_search_with_a_confusable_character_finds_the_car(page, operator, make_device, dash_server):
    device = make_device(name="Gate North")
    ref = upload_picture(dash_server, device, "D2651BF")
    post_envelope(dash_server, device, envelope(device.id, payload={"plate": "D2651BF", "confidence": 0.91, "image_ref": ref}))
    post_envelope(dash_server, device, envelope(device.id, payload={"plate": "XY777QQ", "confidence": 0.88}))
    log_in(page, operator)
    page.click("nav >> text=Detections")

    page.fill("#f-plate", "O2651BF")  # O for D: what an OCR or a witness gets wrong
    page.select_option("#f-match", "exact")
    page.click("#search-form button[type=submit]")
    assert page.locator("#results").count() == 0  # exact: no such plate

    page.select_option("#f-match", "fuzzy")
    page.click("#search-form button[type=submit]")
    rows = page.locator("#results tbody tr")
    assert rows.count() == 1
    assert "D2651BF" in rows.first.inner_text()
    page.wait_for_function("document.querySelector('#results .thumb').naturalWidth > 0")

    page.check("input[name=view][value=passages]")
    page.click("#search-form button[type=submit]")
    assert "D2651BF" in page.locator("#results tbody tr").first.inner_text()
    csv = page.request.get(page.get_attribute("#csv-link", "href"))
    assert csv.ok and "D2651BF" in csv.text() and "XY777QQ" not in csv.text()
    page.check("input[name=view][value=reads]")
    page.click("#search-form button[type=submit]")
    screenshot(page, "detections")


def test_acknowledging_an_alert_updates_it(page, operator, make_device, dash_server):
    from detections.alert_models import Alert, Watchlist, WatchlistEntry

    device = make_device(name="Bridge east")
    watchlist = Watchlist.objects.create(name="Stolen vehicles", description="reported to the police")
    for value, match, prio, note in [("RT86XYZ", "lenient", 3, "reported 24 Nov"), ("WM4410K", "exact", 1, "")]:
        WatchlistEntry.objects.create(watchlist=watchlist, value=value, match=match, priority=prio, note=note)
    now = datetime.now(timezone.utc)
    alerts = [Alert.objects.create(watchlist=watchlist, device=device, plate=p, matched=p, priority=prio, captured_at=now,
                                   note=note) for p, prio, note in [("RT86XYZ", 3, "reported 24 Nov"), ("WM4410K", 1, "")]]
    log_in(page, operator)
    page.click("nav >> text=Alerts")
    assert page.inner_text(".count-badge") == "2 open"
    wait_live(page)
    page.evaluate("window.__loadedOnce = true")
    row = page.locator(f'[data-alert="{alerts[0].id}"]')
    row.locator("button.ack").click()
    row.locator(".ack-done").wait_for()
    assert f"acknowledged by {operator.username}" in row.inner_text()
    assert page.evaluate("window.__loadedOnce") is True  # acknowledged in place
    alerts[0].refresh_from_db()
    assert alerts[0].acknowledged_by_id == operator.id and alerts[0].acknowledged_at is not None
    screenshot(page, "alerts")

    page.goto("/dashboard/alerts/?show=acknowledged")
    assert "RT86XYZ" in page.inner_text("#alerts") and "WM4410K" not in page.inner_text("#alerts")
    page.goto("/")
    assert page.inner_text("#count-alerts") == "1"
    page.locator(f'[data-alert="{alerts[1].id}"] button.ack').click()
    page.locator(f'[data-alert="{alerts[1].id}"] .ack-done').wait_for()
    assert page.inner_text("#count-alerts") == "0"


class WebSocketCamera:
    """A camera on /ws/device/ in its own thread: answers pings, keeps every other frame."""

    def __init__(self, server, device):
        status, body = http(server, "POST", "/api/v1/device/token/", b"", {"Authorization": f"Device {device.issued.key}"})
        assert status == 201, body
        self.ws = ws_connect(f"{server.ws}/ws/device/?token={body['token']}")
        self.frames: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("type") == "ping":
                    self.ws.send(json.dumps({"type": "pong", "sent_at": frame["sent_at"]}))
                else:
                    self.frames.put(frame)
        except Exception:
            pass

    def wait(self, kind: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            frame = self.frames.get(timeout=max(0.01, deadline - time.monotonic()))
            if frame.get("type") == kind:
                return frame

    def close(self) -> None:
        self.ws.close()
        self.thread.join(5)


def test_a_command_sent_from_the_device_page_reaches_the_camera(page, operator, make_device, dash_server):
    from devices.models import Command

    device = seed_fleet(make_device, dash_server, reads=0)[0]
    camera = WebSocketCamera(dash_server, device)
    try:
        log_in(page, operator)
        page.click("nav >> text=Devices")
        page.click(f'#devices-table a[href="/dashboard/devices/{device.id}/"]')
        assert page.locator("#video-toggle").is_visible()  # it holds a live connection, so it can stream
        page.fill("#cmd-action", "capture")
        page.fill("#cmd-params", '{"resolution": "full"}')
        page.click("#command-form button[type=submit]")

        pushed = camera.wait("command")["command"]
        assert (pushed["action"], pushed["params"]) == ("capture", {"resolution": "full"})
        command = Command.objects.get(pk=pushed["id"])
        assert command.device_id == device.id
        row = page.locator(f'[data-command="{pushed["id"]}"]')
        wait_live(page)
        camera.ws.send(json.dumps(envelope(device.id, "control", {"command_id": pushed["id"], "status": "done"},
                                           protocol="websocket")))  # fmt: skip
        page.wait_for_function(
            f"document.querySelector('[data-command=\"{pushed['id']}\"] [data-command-state]').textContent === 'done'"
        )  # the answer shows without a reload
        assert "done (websocket)" in row.inner_text()

        page.click("#video-toggle")  # the first viewer starts the camera's stream (CONTRACT section 4)
        assert camera.wait("video")["action"] == "start"
        camera.ws.send(plate_picture("LIVE 01", size=(640, 360)))
        page.wait_for_function("document.getElementById('video-frame').naturalWidth === 640")
        page.wait_for_timeout(400)
        screenshot(page, "device")
    finally:
        camera.close()


def test_devices_list_and_analytics_show_the_fleet_and_the_rollups(page, operator, make_device, dash_server):
    from detections.rollups import rollup_recent

    devices = seed_fleet(make_device, dash_server, reads=8)
    rollup_recent()
    log_in(page, operator)
    page.click("nav >> text=Devices")
    for device in devices:
        assert device.id in page.inner_text("#devices-table")
    assert page.locator('[data-state-of].state-degraded').count() == 2
    screenshot(page, "devices")

    page.click("nav >> text=Analytics")
    wait_until(lambda: page.evaluate("!!window.Chart"), what="Chart.js served from vendor/")
    text = page.inner_text("main")
    assert devices[0].id in text and "north" in text
    assert page.locator("table").first.locator("tbody tr").count() == 4  # four protocols in the mix
    page.wait_for_timeout(600)
    screenshot(page, "analytics")
