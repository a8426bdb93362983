"""Consumers do not run Channels' database housekeeping (a hop to the sync thread) for every message."""

from __future__ import annotations

import asyncio
import json

import channels.db
import pytest
from channels.testing import WebsocketCommunicator

from tests.factories import OperatorFactory
from transport import fanout
from transport.ws.dashboard import DashboardConsumer

from .test_dashboard_bursts import IN_MEMORY, event, open_dashboard

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_dashboard_answering_frames_costs_no_housekeeping_per_frame(settings, monkeypatch):
    settings.CHANNEL_LAYERS, settings.REDIS_URL = IN_MEMORY, ""
    operator = OperatorFactory()
    calls = []
    real = channels.db.close_old_connections
    monkeypatch.setattr(channels.db, "close_old_connections", lambda: (calls.append(1), real()))

    async def scenario() -> tuple[int, int, int]:
        communicator: WebsocketCommunicator = await open_dashboard(operator)
        after_connect = len(calls)
        frames = 0
        for n in range(20):
            await fanout.publish(b"[" + event(n) + b"]", 1)
            output = await communicator.receive_output(timeout=5)
            assert json.loads(output["text"])["events"][0]["message_id"] == f"m{n}"
            await communicator.send_to(text_data='{"type": "next"}')
            frames += 1
        await asyncio.sleep(0.1)  # the last answer is handled
        during = len(calls) - after_connect
        await communicator.disconnect()
        return after_connect, frames, during

    after_connect, frames, during = asyncio.run(scenario())
    assert after_connect >= 1  # before connecting (and around its database query) it still runs
    assert frames == 20 and during == 0  # twenty frames and twenty answers: none


def test_the_consumers_cameras_and_operators_use_skip_it():
    from transport.ws.device import DeviceConsumer
    from transport.ws.video import VideoViewerConsumer

    from transport.ws.consumers import NoHousekeepingPerMessage

    for consumer in (DeviceConsumer, DashboardConsumer, VideoViewerConsumer):
        assert issubclass(consumer, NoHousekeepingPerMessage), consumer
