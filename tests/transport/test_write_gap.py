"""The real-time writes' gap (REALTIME_WRITE_GAP_MS) holds back only writes that follow a write of several
messages: under light load a message is written as soon as the writer is free."""

from __future__ import annotations

import asyncio

from transport import batching
from transport.pipeline import Ack, Inbound

GAP_S = 0.3


def _write_starts(monkeypatch, first_write: int) -> list[float]:
    """When each write began: one of `first_write` messages, then, once it is done, one of a single message."""

    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        starts, done = [], asyncio.Event()

        async def write(items: list[Inbound]) -> list[Ack]:  # stands in for storage: the scheduler is under test
            starts.append(loop.time())
            return [Ack(None, "accepted") for _ in items]

        async def deliver(tokens: list, acks: list[Ack]) -> None:
            if len(starts) == 2:
                done.set()

        monkeypatch.setattr(batching, "write", write)
        first = batching.MicroBatcher(deliver)
        first.add_all([Inbound(b"m", None, "websocket") for _ in range(first_write)])
        await first.drained()
        batching.MicroBatcher(deliver).add(Inbound(b"next", None, "websocket"), None)
        await asyncio.wait_for(done.wait(), 5)
        return starts

    return asyncio.run(scenario())


def test_after_a_write_of_one_message_the_next_starts_at_once(monkeypatch, settings):
    settings.REALTIME_WRITE_GAP_MS = GAP_S * 1000
    first, second = _write_starts(monkeypatch, first_write=1)
    assert second - first < GAP_S / 2


def test_after_a_write_of_several_messages_the_next_waits_out_the_gap(monkeypatch, settings):
    settings.REALTIME_WRITE_GAP_MS = GAP_S * 1000
    first, second = _write_starts(monkeypatch, first_write=batching.GAP_AFTER_MESSAGES)
    assert second - first >= GAP_S
