"""A dashboard socket whose process is busy when events arrive still shows every one of them.

The consumer runs in this test's event loop, events delivered in-process (no
REDIS_URL): a burst of published messages is handled back to back, with no
chance for the socket's frame timer to fire in between, as happens to a
server process that the CPU or the GIL holds up while other processes keep
publishing (its subscriber then reads many messages at once).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator

from tests.factories import OperatorFactory
from transport import fanout
from transport.ws import dashboard
from transport.ws.dashboard import DashboardConsumer

pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10_000}}}


def event(n: int, pad: int = 0) -> bytes:
    return json.dumps({"type": "detection", "message_id": f"m{n}", "pad": "x" * pad}).encode()


async def open_dashboard(user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(DashboardConsumer.as_asgi(), "/ws/dashboard/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    for _ in range(100):  # accepted first, then checked and joined
        if fanout.local_sinks():
            return communicator
        await asyncio.sleep(0.05)
    raise AssertionError("the dashboard socket never joined the fan-out")


async def publish_burst(events: list[bytes]) -> None:
    """One published message per event, without yielding to the loop between them."""
    for fragment in events:
        await fanout.publish(b"[" + fragment + b"]", 1)


async def read_events(communicator: WebsocketCommunicator, wanted: int) -> tuple[list[str], int | None]:
    """message_ids from frames until `wanted` arrived (answering each frame), or the socket closed or went quiet;
    and the close code, if it closed."""
    seen: list[str] = []
    while len(seen) < wanted:
        if await communicator.receive_nothing(timeout=2):
            break
        output = await communicator.receive_output()
        if output["type"] == "websocket.close":
            return seen, output["code"]
        seen.extend(e["message_id"] for e in json.loads(output["text"])["events"])
        await communicator.send_to(text_data='{"type": "next"}')
    return seen, None


def test_a_burst_of_layer_messages_reaches_the_dashboard_whole_and_in_order(settings):
    settings.CHANNEL_LAYERS, settings.REDIS_URL = IN_MEMORY, ""
    operator = OperatorFactory()
    burst = 400  # channel-layer messages arriving while the socket cannot send a frame

    async def scenario():
        communicator = await open_dashboard(operator)
        await publish_burst([event(n) for n in range(burst)])
        seen, closed = await read_events(communicator, burst)
        await communicator.disconnect()
        return seen, closed

    assert asyncio.run(scenario()) == ([f"m{n}" for n in range(burst)], None)


def test_a_burst_beyond_what_a_socket_may_hold_closes_it_rather_than_dropping_events(settings, monkeypatch):
    settings.CHANNEL_LAYERS, settings.REDIS_URL = IN_MEMORY, ""
    monkeypatch.setattr(dashboard, "MAX_WAITING_BYTES", 64 * 1024)
    operator = OperatorFactory()
    burst = 200  # of 1 KB each: three times what the socket may hold

    async def scenario():
        communicator = await open_dashboard(operator)
        await publish_burst([event(n, pad=1000) for n in range(burst)])
        return await read_events(communicator, burst)

    seen, closed = asyncio.run(scenario())
    assert closed == dashboard.CLOSE_TOO_SLOW
    assert seen == [f"m{n}" for n in range(len(seen))], "what the socket showed before closing has a gap"
