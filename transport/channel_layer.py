"""The Redis channel layer, made to ride out a Redis outage instead of taking every WebSocket down with it.

channels-redis raises from `receive` when Redis goes away, and Channels then
ends the consumer: every camera socket and dashboard on the server closes
(1011), and none can reconnect while `group_add` fails. Live push is a
convenience; ingest is not, and it needs no Redis. So here:

- `receive` waits for Redis to come back (retrying with a short backoff)
  instead of raising; the consumer and its socket stay up;
- `group_add` / `group_discard` that fail are logged, not raised, and this
  process remembers which of its channels belong to which groups, so that
  when Redis answers again (a restart may have lost every group) they are
  joined again;
- `send` and `group_send` still raise: their callers (transport.live) log
  and drop what could not be delivered.
"""

from __future__ import annotations

import asyncio
import logging

import redis
from channels_redis.core import RedisChannelLayer

log = logging.getLogger(__name__)

REDIS_DOWN = (redis.RedisError, OSError)
RETRY_MIN_S, RETRY_MAX_S = 0.2, 2.0


class ResilientRedisChannelLayer(RedisChannelLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.memberships: dict[str, set[str]] = {}  # channel → groups, for this process's channels
        self._recovery: asyncio.Task | None = None

    async def receive(self, channel: str) -> dict:
        delay = RETRY_MIN_S
        while True:
            try:
                return await super().receive(channel)
            except REDIS_DOWN as exc:
                self._lost(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def group_add(self, group: str, channel: str) -> None:
        self.memberships.setdefault(channel, set()).add(group)
        try:
            await super().group_add(group, channel)
        except REDIS_DOWN as exc:
            self._lost(exc)

    async def group_discard(self, group: str, channel: str) -> None:
        groups = self.memberships.get(channel, set())
        groups.discard(group)
        if not groups:
            self.memberships.pop(channel, None)
        try:
            await super().group_discard(group, channel)
        except REDIS_DOWN as exc:  # the membership expires by itself (group_expiry)
            self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        if self._recovery is None or self._recovery.done():
            log.warning("channel layer: Redis is unreachable (%s); live push waits for it", exc)
            self._recovery = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        """Wait until Redis answers, then join every remembered group again (a restart may have lost them all)."""
        delay = RETRY_MIN_S
        while True:
            await asyncio.sleep(delay)
            try:
                await self.connection(0).ping()
                for channel, groups in list(self.memberships.items()):
                    for group in list(groups):
                        await super().group_add(group, channel)
            except REDIS_DOWN:
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            log.warning("channel layer: Redis is back; %d channel(s) joined their groups again", len(self.memberships))
            return
