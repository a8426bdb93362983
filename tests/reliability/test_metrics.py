"""`/metrics`: ingest counts by transport and outcome, camera-to-commit, wait and commit latencies, queue depths."""

from __future__ import annotations

import asyncio
import json

import pytest
import requests
import websockets

from tests.factories import envelope
from tests.support import wait_until

from .conftest import scrape

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_metrics_count_outcomes_and_time_what_was_committed(server, device, token_for):
    before = scrape(server)
    good, bad = envelope(device.id, protocol="rest"), {**envelope(device.id), "payload": []}
    auth = {"Authorization": f"Device {device.issued.key}"}
    for env in (good, good, bad):
        requests.post(f"{server.http}/api/v1/ingest/", json=env, headers=auth, timeout=10)

    async def over_websocket():
        async with websockets.connect(f"{server.ws}/ws/device/?token={token_for(device)}") as ws:
            await ws.send(json.dumps(envelope(device.id, protocol="websocket")))
            while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "ack":
                pass

    asyncio.run(over_websocket())
    after = scrape(server)

    def grew(series: str) -> float:
        return after.get(series, 0) - before.get(series, 0)

    assert grew('lpr_ingest_messages_total{transport="rest",status="accepted"}') == 1
    assert grew('lpr_ingest_messages_total{transport="rest",status="duplicate"}') == 1
    assert grew('lpr_ingest_messages_total{transport="rest",status="rejected"}') == 1
    assert grew('lpr_ingest_messages_total{transport="websocket",status="accepted"}') == 1
    assert grew('lpr_ingest_latency_seconds_count{transport="rest"}') == 1
    assert grew('lpr_ingest_latency_seconds_count{transport="websocket"}') == 1
    assert after['lpr_ingest_latency_seconds_bucket{transport="rest",le="+Inf"}'] == \
        after['lpr_ingest_latency_seconds_count{transport="rest"}']  # fmt: skip
    assert grew("lpr_ingest_commit_seconds_count") == 2 and after["lpr_ingest_commit_seconds_sum"] > 0
    assert grew("lpr_realtime_wait_seconds_count") == 4  # three POSTs and a frame queued for a write
    # the event loop's probe, started by the first request, wakes every 50 ms
    wait_until(lambda: scrape(server)["lpr_event_loop_lag_seconds_count"] > after["lpr_event_loop_lag_seconds_count"],
               timeout=10, what="the event-loop probe to count a wake-up")  # fmt: skip
    for queue in ("realtime_batcher", "alert_intake", "live_pacer"):
        assert f'lpr_queue_depth{{queue="{queue}"}}' in after
    assert "lpr_live_events_dropped_total" in after
