"""Limits (CONTRACT section 4): a device over its rate is told to come back later on every transport, and nothing
of what was refused is stored; bodies past the limits are refused before they are read."""

from __future__ import annotations

import asyncio
import json

import pytest
import requests
import socketio
import websockets
from django.conf import settings
from django.utils import timezone

from tests.factories import envelope
from tests.mqtt.conftest import Camera
from transport.models import Message, RejectedMessage

from .conftest import still_answers, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SERVER_BURST = 1000  # DEVICE_RATE_BURST of the test servers (tests/realtime/conftest.start_server)
OVER = 60


def slow_device(make_device):
    return make_device(rate_limit_per_s=0.2)  # refills one message every 5 s: the burst is all it gets


def tally(device, acks: list[dict], via: str, burst: int = SERVER_BURST) -> dict:
    """Every ack accepted or throttled; the whole burst used (frames batched together are not refused together,
    only a REST batch is); nothing throttled stored."""
    accepted = {a["message_id"] for a in acks if a["status"] == "accepted"}
    throttled = [a for a in acks if a["status"] == "throttled"]
    assert len(accepted) + len(throttled) == len(acks), {a["status"] for a in acks}
    assert burst <= len(accepted) <= burst + 2, (via, len(accepted))  # + what refills while the test runs
    assert all(a["error"] == "throttled" and a["retry_after"] >= 1 for a in throttled)
    stored = {str(i) for i in Message.objects.filter(device=device).values_list("message_id", flat=True)}
    assert stored == accepted, via
    return {"sent": len(acks), "accepted": len(accepted), "throttled": len(throttled), "stored": len(stored)}


def health(device, via: str, n: int) -> list[dict]:
    return [envelope(device.id, "health", protocol=via) for _ in range(n)]


def test_rest_answers_429_with_retry_after_and_stores_nothing_of_it(server, make_device, figures):
    device = slow_device(make_device)
    auth = {"Authorization": f"Device {device.issued.key}"}
    url = f"{server.http}/api/v1/ingest/"
    with requests.Session() as session:
        batch = session.post(url + "batch/", json={"messages": health(device, "rest", SERVER_BURST)}, headers=auth)
        over = [session.post(url, json=env, headers=auth) for env in health(device, "rest", OVER)]
        refused_batch = session.post(url + "batch/", json={"messages": health(device, "rest", 2)}, headers=auth)
    acks = [{**r, "status": r["status"]} for r in batch.json()["results"]]
    for r in [*over, refused_batch]:
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and r.json()["error"] == "throttled"
        acks.append({"message_id": None, "status": "throttled", "error": "throttled",
                     "retry_after": int(r.headers["Retry-After"])})  # fmt: skip
    figures.record("limits", "rate_rest", **tally(device, acks, "rest"))


def test_websocket_acks_throttled_with_retry_after(server, make_device, token_for, figures):
    device = slow_device(make_device)
    sent = health(device, "websocket", SERVER_BURST + OVER)

    async def scenario():
        async with websockets.connect(f"{server.ws}/ws/device/?token={token_for(device)}") as ws:
            for env in sent:
                await ws.send(json.dumps(env))
            acks = []
            while len(acks) < len(sent):
                frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
                if frame["type"] == "ack":
                    acks.append(frame)
            return acks

    figures.record("limits", "rate_websocket", **tally(device, asyncio.run(scenario()), "websocket"))


def test_socketio_acks_throttled_with_retry_after(server, make_device, token_for, figures):
    device = slow_device(make_device)
    sent = health(device, "socketio", SERVER_BURST + OVER)

    async def scenario():
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(server.http, namespaces=["/device"], auth={"token": token_for(device)},
                             transports=["websocket"])  # fmt: skip
        limit = asyncio.Semaphore(64)

        async def call(env):
            async with limit:
                return await client.call("envelope", env, namespace="/device", timeout=15)

        try:
            return await asyncio.gather(*(call(env) for env in sent))
        finally:
            await client.disconnect()

    figures.record("limits", "rate_socketio", **tally(device, asyncio.run(scenario()), "socketio"))


def test_mqtt_acks_throttled_on_down_ack(mqtt_bridge, make_device, figures):
    broker, _ = mqtt_bridge
    device = slow_device(make_device)
    sent = health(device, "mqtt", settings.DEVICE_RATE_BURST + OVER)  # the bridge runs with this process's settings
    camera = Camera(device.id, broker.port).connect()
    for env in sent:
        camera.publish(env)
    wait_until(lambda: len(camera.ack_list) >= len(sent), 60, what="every ack")
    camera.close()
    figures.record("limits", "rate_mqtt", **tally(device, camera.ack_list, "mqtt", settings.DEVICE_RATE_BURST))


def test_bodies_past_each_endpoint_limit_are_refused_413_and_recorded(server, device, figures):
    start, auth = timezone.now(), {"Authorization": f"Device {device.issued.key}", "Content-Type": "application/json"}
    limits = {"ingest/": 256 * 1024, "ingest/batch/": settings.BATCH_MAX_BYTES,
              "compat/openalpr/": 4 * settings.IMAGE_MAX_BYTES}  # fmt: skip
    with requests.Session() as session:
        answers = {path: session.post(f"{server.http}/api/v1/{path}", data=b"{" + b" " * limit + b"}", headers=auth)
                   for path, limit in limits.items()}  # fmt: skip
    for path, answer in answers.items():
        assert (answer.status_code, answer.json()["error"]) == (413, "too_large"), path
    assert RejectedMessage.objects.filter(transport="rest", error="too_large", received_at__gte=start).count() == 3
    assert not Message.objects.filter(device=device).exists()
    assert still_answers(server)
    figures.record("limits", "body_sizes", **{path: {"limit_bytes": limit, "status": answers[path].status_code}
                                              for path, limit in limits.items()})  # fmt: skip
