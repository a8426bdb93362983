"""Slow consumers cost the server a bounded amount of memory and are closed, never queued for without end."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.realtime.conftest import operator_headers
from transport import live

from .conftest import scrape, still_answers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EVENT_BYTES = 1000


def flood_dashboards(events: int) -> None:
    """Publish `events` dashboard events of about EVENT_BYTES each, to every server process as a server does."""
    fragments = [json.dumps({"type": "health", "device_id": "FLOOD", "n": n, "pad": "x" * EVENT_BYTES}).encode()
                 for n in range(events)]  # fmt: skip
    asyncio.run(live.send_to_dashboards(fragments))


async def drain(ws) -> tuple[int, int, bool]:
    """Read what the server sent until it closed the socket (or stayed silent for 5 s): (frames, events, closed)."""
    frames = events = 0
    try:
        while True:
            frame = await asyncio.wait_for(ws.recv(), 5)
            frames += 1
            events += len(json.loads(frame)["events"])
    except ConnectionClosed:
        return frames, events, True
    except TimeoutError:
        return frames, events, False


def test_a_dashboard_that_never_reads_is_closed_and_does_not_grow_the_server(server, operator_cookie, figures):
    flooded = 60_000  # 60 MB of events: without flow control the server would buffer them all for this socket

    async def scenario():
        headers = operator_headers(server, operator_cookie)
        async with websockets.connect(f"{server.ws}/ws/dashboard/", additional_headers=headers, max_queue=1,
                                      ping_interval=None) as stalled:  # fmt: skip
            await asyncio.sleep(0.3)  # joined the dashboards' group
            before = server.rss_kib()
            await asyncio.to_thread(flood_dashboards, flooded)
            await asyncio.to_thread(time.sleep, 1.0)
            after = server.rss_kib()
            return before, after, *await drain(stalled)

    before, after, frames, events, closed = asyncio.run(scenario())
    grew_mib = (after - before) / 1024
    figures.record("limits", "dashboard_that_never_reads", events_published=flooded, frames_read_after=frames,
                   events_read_after=events, closed=closed, server_rss_growth_mib=round(grew_mib, 1))  # fmt: skip
    assert closed
    assert grew_mib < 16, f"server RSS grew by {grew_mib:.0f} MiB"
    assert still_answers(server)
    assert scrape(server)["lpr_live_events_dropped_total"] > 0
