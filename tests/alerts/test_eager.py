"""The run command's mode: no REDIS_URL, Celery eager in the server process. Alerts and rollups still happen."""

from __future__ import annotations

import sys

import pytest

from detections.alert_models import Alert, Delivery, Rollup
from tests.alerts.conftest import detection, make_watchlist, make_webhook, wait_until
from tests.alerts.test_delivery import SECRET, send_rest
from tests.realtime.conftest import start_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_without_redis_the_server_raises_alerts_and_rolls_up_in_process(tmp_path, receivers, make_device):
    receiver, hanging = receivers(), receivers(default="hang")
    server = start_server(tmp_path, [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", "{port}",
                                     "--no-mqtt"], REDIS_URL="", ROLLUP_INTERVAL_S="1",
                          ALERT_WEBHOOK_TIMEOUT_S="1", ALERT_WEBHOOK_BACKOFF_S="0.5", ALERT_INDEX_CHECK_S="0")  # fmt: skip
    try:
        make_watchlist([{"value": "EAGER01", "match": "lenient"}])
        stuck = make_webhook(hanging.url, SECRET)  # created first, so queued first: it must not hold up the other
        make_webhook(receiver.url, SECRET)
        device = make_device()
        send_rest(server, device, detection(device.id, "EAGER0I"))
        wait_until(lambda: receiver.received, 20, what="the webhook, from the eager server")
        wait_until(lambda: Rollup.objects.filter(device_id=device.id, period="hour", detections=1).exists(), 20,
                   what="the in-process beat's rollup")  # fmt: skip
    finally:
        server.stop()
    alert = Alert.objects.get()
    assert alert.plate == "EAGER0I" and receiver.received[0].signed_with(SECRET)
    assert Delivery.objects.get(channel="dashboard").state == "delivered"
    assert Delivery.objects.exclude(webhook=stuck).get(channel="webhook").state == "delivered"
    assert hanging.attempts and Delivery.objects.get(webhook=stuck).state == "pending"
