"""A connection's periodic chores (ping, presence refresh), surviving a failed round."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger(__name__)


def every(interval: float, step: Callable[[], Awaitable[bool | None]], first_after: float | None = None) -> asyncio.Task:
    """Run `step` every `interval` seconds (the first time after `first_after`) until it returns False.

    A round that fails (Redis or the database briefly away) is logged and the
    next one runs as usual, so a blip does not leave a connection unwatched.
    """

    async def loop() -> None:
        wait = interval if first_after is None else first_after
        while True:
            await asyncio.sleep(wait)
            wait = interval
            try:
                if await step() is False:
                    return
            except Exception:
                log.exception("periodic %s failed; retrying in %s s", getattr(step, "__name__", step), interval)

    return asyncio.get_running_loop().create_task(loop())


async def stop(task: asyncio.Task | None) -> None:
    """Cancel the chores and wait until they are over: a refresh still in flight must not
    re-add a presence entry after the connection has removed it."""
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
