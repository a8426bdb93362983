"""A connection's life: periodic chores (ping, presence refresh) that survive a failed round, and a
leaving step that runs exactly once however the connection ends."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger(__name__)


def every(interval: float, step: Callable[[], Awaitable[bool | None]]) -> asyncio.Task:
    """Run `step` every `interval` seconds until it returns False or the task is cancelled.

    A round that fails (Redis or the database briefly away) is logged and the
    next one runs as usual, so a blip does not leave a connection unwatched.
    """

    async def loop() -> None:
        me = asyncio.current_task()
        # Checked, not only raised: a callee may swallow the cancellation (the asyncio Redis client's calls behind
        # presence were seen to, now and then), and the chores would then go on after the connection left,
        # refreshing its presence entry every interval.
        while not me.cancelling():
            await asyncio.sleep(interval)
            try:
                if await step() is False:
                    return
            except Exception:
                log.exception("periodic %s failed; retrying in %s s", getattr(step, "__name__", step), interval)

    return asyncio.get_running_loop().create_task(loop())


async def stop(task: asyncio.Task | None, patience: float = 2.0) -> None:
    """Cancel the chores and wait (a little) until they are over: a refresh still in flight must
    not re-add a presence entry after the connection has removed it."""
    if task is None or task is asyncio.current_task():
        return
    task.cancel()
    await asyncio.wait({task}, timeout=patience)


class LeavesOnce:
    """Mixin for consumers: `leave()` runs once, on a normal close, and also when the consumer
    crashes or the server kills it, so presence and viewer counts never keep a ghost."""

    _left = False

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        finally:
            await self._leave_once()

    async def _leave_once(self) -> None:
        if self._left:
            return
        self._left = True
        try:
            await self.leave()
        except Exception:
            log.exception("leaving %s failed", type(self).__name__)

    async def leave(self) -> None:
        raise NotImplementedError
