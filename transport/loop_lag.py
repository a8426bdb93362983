"""How late a server process's event loop runs a timer (`lpr_event_loop_lag_seconds`).

Every frame, ack and live event of a web process waits for the one loop to
get to it; a loop kept busy (or a process kept off the CPU) shows here first.
One probe per loop wakes every INTERVAL_S and records how late it woke.
"""

from __future__ import annotations

import asyncio
import weakref

from . import metrics

INTERVAL_S = 0.05
_watched: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()  # a loop's timer keeps its probe alive


def watch(loop: asyncio.AbstractEventLoop) -> None:
    """Start the loop's probe, once (called from the ASGI application, on the loop)."""
    if loop not in _watched:
        _watched.add(loop)
        loop.create_task(_probe(loop))


async def _probe(loop: asyncio.AbstractEventLoop) -> None:
    while True:
        due = loop.time() + INTERVAL_S
        await asyncio.sleep(INTERVAL_S)
        metrics.event_loop_lag.observe(max(0.0, loop.time() - due))
