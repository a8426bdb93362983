"""`lpr_realtime_wait_seconds`: how long a queued message waited for its write to begin."""

from __future__ import annotations

import asyncio

from transport import batching, metrics
from transport.pipeline import Ack, Inbound

WRITE_HELD_S = 0.05


def _cumulative() -> dict[str, int]:
    """le → messages that waited at most that long, from the histogram as /metrics renders it."""
    out = {}
    for line in metrics.realtime_wait.render():
        if line.startswith("lpr_realtime_wait_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out[le] = int(line.rsplit(" ", 1)[1])
    return out


def test_a_message_queued_behind_a_write_in_flight_is_counted_with_its_wait(monkeypatch):
    """The first message is written at once; a second, queued while that write is held, waits for it."""
    before = _cumulative()

    async def scenario() -> list[str]:
        release, written = asyncio.Event(), []

        async def held_write(items: list[Inbound]) -> list[Ack]:  # stands in for storage: the scheduler is under test
            await release.wait()
            written.extend(item.body for item in items)
            return [Ack(None, "accepted") for _ in items]

        monkeypatch.setattr(batching, "write", held_write)
        acked = asyncio.Event()

        async def deliver(tokens: list, acks: list[Ack]) -> None:
            if len(written) == 2:
                acked.set()

        batching.MicroBatcher(deliver).add(Inbound(b"first", None, "websocket"), None)
        batching.MicroBatcher(deliver).add(Inbound(b"second", None, "websocket"), None)
        await asyncio.sleep(WRITE_HELD_S)
        release.set()
        await asyncio.wait_for(acked.wait(), 5)
        return written

    assert asyncio.run(scenario()) == [b"first", b"second"]
    after = _cumulative()
    grew = {le: after[le] - before.get(le, 0) for le in after}
    assert grew["+Inf"] == 2
    assert grew["0.03"] == 1  # the first: taken as it was queued
    assert grew["0.05"] == 1  # the second waited out the held write, at least WRITE_HELD_S
