"""End to end with a real Celery worker: a watchlist hit over REST, WebSocket and MQTT raises one alert that reaches
the dashboard socket and a signed webhook; failing receivers are retried with backoff and disabled when they keep
failing; e-mail goes through Django's e-mail backend."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
import uuid
from pathlib import Path

import pytest
import websockets

from detections.alert_models import Alert, Delivery, Webhook
from tests.alerts.conftest import detection, make_watchlist, make_webhook, wait_until
from tests.realtime.conftest import operator_headers, start_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SECRET = "hook-secret-1"


@pytest.fixture(scope="module")
def server(redis_db, tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("daphne"))
    yield s
    s.stop()


class Dashboard:
    """An operator's /ws/dashboard/ socket on a thread of its own, collecting alert events."""

    def __init__(self, server, cookie: str):
        self.alerts: list[dict] = []
        self.joined = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run(server, cookie)), daemon=True)
        self._thread.start()
        assert self.joined.wait(10), "the dashboard did not connect"

    async def _run(self, server, cookie: str) -> None:
        async with websockets.connect(f"{server.ws}/ws/dashboard/", additional_headers=operator_headers(server, cookie)) as ws:
            await asyncio.sleep(0.3)  # the consumer has joined the dashboards' group
            self.joined.set()
            while not self._stop.is_set():
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
                except asyncio.TimeoutError:
                    continue
                if frame.get("type") == "events":
                    self.alerts.extend(e for e in frame["events"] if e["type"] == "alert")
                    await ws.send('{"type": "next"}')  # answered, as the dashboard page does (flow control)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def dashboard(server, transactional_db):
    from django.test import Client

    from tests.factories import OperatorFactory

    client = Client()
    client.force_login(OperatorFactory())
    d = Dashboard(server, f"sessionid={client.cookies['sessionid'].value}")
    yield d
    d.close()


def send_rest(server, device, env: dict) -> None:
    request = urllib.request.Request(f"{server.http}/api/v1/ingest/", json.dumps(env).encode(), method="POST",
                                     headers={"Authorization": f"Device {device.issued.key}",
                                              "Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["status"] == "accepted"


def send_websocket(server, device, env: dict) -> None:
    from transport.auth import issue_token

    async def go():
        async with websockets.connect(f"{server.ws}/ws/device/?token={issue_token(device)[0]}") as ws:
            await ws.send(json.dumps(env))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame.get("type") == "ack" and frame["message_id"] == env["message_id"]:
                    assert frame["status"] == "accepted", frame
                    return

    asyncio.run(go())


def send_socketio(server, device, env: dict) -> None:
    """With the npm socket.io-client, as tests/realtime does (it exits on its own after 30 s; killed here)."""
    import subprocess

    from transport.auth import issue_token

    script = Path(__file__).resolve().parents[1] / "realtime" / "sio_client.js"
    node = subprocess.Popen(["node", str(script), server.http, issue_token(device)[0], json.dumps(env)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert json.loads(node.stdout.readline())["ack"]["status"] == "accepted"
    finally:
        node.kill()
        node.wait()


@pytest.fixture
def send_mqtt(tmp_path):
    from tests.mqtt.conftest import RUNNING, BridgeProcess, Camera, Mosquitto

    broker = Mosquitto(tmp_path)
    bridge = BridgeProcess(tmp_path, broker.url, f"alerts-bridge-{uuid.uuid4().hex[:6]}").wait_subscribed()
    cameras = []

    def send(server, device, env: dict) -> None:
        camera = Camera(device.id, broker.port).connect()
        cameras.append(camera)
        camera.publish(env)
        assert camera.wait_ack(env["message_id"])["status"] == "accepted"

    yield send
    for camera in cameras:
        camera.close()
    bridge.terminate()
    RUNNING.remove(bridge)
    broker.stop()


@pytest.mark.parametrize("via", ["rest", "websocket", "socketio", "mqtt"])
def test_a_watchlist_hit_raises_one_alert_on_the_dashboard_and_a_signed_webhook(
    via, worker, server, dashboard, receiver, make_device, request
):
    send = {"rest": send_rest, "websocket": send_websocket, "socketio": send_socketio}.get(via)
    send = send or request.getfixturevalue("send_mqtt")
    watchlist = make_watchlist([{"value": "ST0LEN1", "match": "lenient", "note": "stolen 2026-11-20"}])
    make_webhook(receiver.url, SECRET)
    device = make_device()
    reads = [detection(device.id, "5T0LEN1", protocol=via), detection(device.id, "ST0LEN1", protocol=via)]
    for env in reads:  # OCR read 5 for S, then a second read of the same passage
        send(server, device, env)

    wait_until(lambda: receiver.received and dashboard.alerts, 20, what="the webhook and the dashboard")
    wait_until(lambda: Delivery.objects.filter(state="delivered").count() == 2, 10, what="both deliveries logged")
    alert = Alert.objects.get()  # one per passage: the two reads raise one alert between them
    # Which read it cites depends on which match task a worker finishes first; it must be one of the two.
    assert alert.detection.message_id in {uuid.UUID(env["message_id"]) for env in reads}
    assert (alert.watchlist_id, alert.device_id) == (watchlist.id, device.id)
    assert [r.alert["id"] for r in receiver.received] == [alert.id]
    assert receiver.received[0].signed_with(SECRET)
    assert receiver.received[0].alert["note"] == "stolen 2026-11-20" and alert.detection.received_via == via
    assert [(a["id"], a["plate"], a["device_id"]) for a in dashboard.alerts] == [(alert.id, alert.detection.plate, device.id)]


def test_a_failing_receiver_is_retried_with_backoff_and_gets_the_alert_once(worker, server, receiver, make_device):
    receiver.script = ["500", "hang"]  # then "ok"
    make_watchlist([{"value": "RETRY42"}])
    make_webhook(receiver.url, SECRET)
    device = make_device()
    send_rest(server, device, detection(device.id, "RETRY42"))

    wait_until(lambda: receiver.received, 30, what="the recovered receiver to get the alert")
    delivery = wait_until(lambda: Delivery.objects.filter(channel="webhook", state="delivered").first(), 10)
    assert [step for _, step in receiver.attempts] == ["500", "hang", "ok"]
    first, second, third = (at for at, _ in receiver.attempts)
    # backoff 0.5 s then 1 s (ALERT_WEBHOOK_BACKOFF_S=0.5), plus the 1 s timeout of the hanging attempt
    assert second - first >= 0.5 and third - second >= 1.0 + 1.0
    assert delivery.attempts == 3 and receiver.received[0].signed_with(SECRET)
    threading.Event().wait(2)  # a duplicate delivery would arrive by now
    assert len(receiver.received) == 1


def test_a_receiver_that_keeps_failing_is_disabled(worker, server, receiver, make_device):
    receiver.default = "500"
    make_watchlist([{"value": "DOWN001"}, {"value": "DOWN002"}])
    failing = make_webhook(receiver.url, SECRET)
    for plate in ("DOWN001", "DOWN002"):
        device = make_device()  # two passages, two alerts
        send_rest(server, device, detection(device.id, plate))

    # ALERT_WEBHOOK_MAX_ATTEMPTS=3 per delivery, ALERT_WEBHOOK_DISABLE_AFTER=2 deliveries in a row
    wait_until(lambda: not Webhook.objects.get(id=failing.id).active, 30, what="the webhook to be disabled")
    failing.refresh_from_db()
    assert failing.failed_deliveries == 2 and "deliveries in a row failed" in failing.disabled_reason
    assert sorted(Delivery.objects.filter(webhook=failing).values_list("state", "attempts")) == [("failed", 3)] * 2
    assert len(receiver.attempts) == 6 and receiver.received == []
    told = wait_until(lambda: [p.read_text() for p in worker.mailbox.glob("*")
                               if "LPR webhook disabled" in p.read_text()], 10, what="mail to the administrators")  # fmt: skip
    assert "ops@example.org" in told[0] and receiver.url in told[0]


def test_a_hanging_webhook_holds_up_neither_another_webhook_nor_the_dashboard(worker, server, receivers, make_device):
    hanging, healthy = receivers(default="hang"), receivers()
    make_watchlist([{"value": "BOTH001"}])
    stuck = make_webhook(hanging.url, SECRET)
    make_webhook(healthy.url, SECRET)
    device = make_device()
    send_rest(server, device, detection(device.id, "BOTH001"))
    wait_until(lambda: healthy.received, 20, what="the healthy webhook")
    assert Delivery.objects.get(webhook=stuck).state == "pending"  # still being retried
    wait_until(lambda: Delivery.objects.get(channel="dashboard").state == "delivered", 5)


def test_alert_e_mail_goes_through_the_django_e_mail_backend(worker, server, make_device):
    make_watchlist([{"value": "MAIL001"}], notify_emails="guard@example.org, chief@example.org")
    device = make_device()
    send_rest(server, device, detection(device.id, "MAIL001"))
    wait_until(lambda: Delivery.objects.filter(channel="email", state="delivered").exists(), 20)
    text = "".join(p.read_text() for p in worker.mailbox.iterdir())
    assert "MAIL001" in text and "guard@example.org" in text and "chief@example.org" in text


def test_a_hit_in_a_compat_format_raises_its_alert_too(worker, server, receiver, make_device):
    body = (Path("/work/shared/samples") / "openalpr_alpr_group.json").read_bytes()  # plate D2651BF
    make_watchlist([{"value": "O265-1B8", "match": "lenient"}])  # the same plate, OCR-confusably written
    make_webhook(receiver.url, SECRET)
    device = make_device()
    request = urllib.request.Request(f"{server.http}/api/v1/compat/openalpr/", body, method="POST",
                                     headers={"Authorization": f"Device {device.issued.key}",
                                              "Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
    wait_until(lambda: receiver.received, 20, what="the webhook")
    assert [(r.alert["plate"], r.alert["device_id"]) for r in receiver.received] == [("D2651BF", device.id)]
    assert receiver.received[0].signed_with(SECRET) and Alert.objects.count() == 1
