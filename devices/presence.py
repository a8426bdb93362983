"""Who holds an open real-time connection, and who watches a device's video, across server processes.

A roster entry is a member (one connection) under a key (one device) with an
expiry: the connection refreshes it on every ping tick, and a process that
dies without saying goodbye leaves entries that lapse by themselves. With
REDIS_URL set the rosters are Redis sorted sets (score = expiry), so every
server process and worker sees them; without it (the run command's
defaults, one process) they live in this process.

Camera connections: `connected`, `refreshed`, `disconnected`, then
`transports_of(device_id)` / `is_connected` for whoever pushes to the device.
Video viewers: `viewer_joined` / `viewer_left` answer how many remain.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import weakref
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from .models import Device

KEY_PREFIX = "lpr:presence:"
WARN_EVERY_S = 10.0

log = logging.getLogger(__name__)


def entry_ttl_s() -> float:
    """How long an entry lives without a refresh: the silent timeout plus one ping tick of slack."""
    return settings.REALTIME_SILENT_TIMEOUT_S + settings.REALTIME_PING_INTERVAL_S


class _MemoryRoster:
    def __init__(self) -> None:
        self._entries: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def join(self, key: str, member: str, ttl: float) -> int:
        with self._lock:
            members = self._live(key)
            members[member] = time.time() + ttl
            return len(members)

    def leave(self, key: str, member: str) -> int:
        with self._lock:
            members = self._live(key)
            members.pop(member, None)
            return len(members)

    def members(self, key: str) -> list[str]:
        with self._lock:
            return list(self._live(key))

    def members_many(self, keys: list[str]) -> list[list[str]]:
        return [self.members(key) for key in keys]

    def _live(self, key: str) -> dict[str, float]:
        now = time.time()
        members = self._entries.setdefault(key, {})
        for member in [m for m, expires in members.items() if expires <= now]:
            del members[member]
        return members

    async def ajoin(self, key: str, member: str, ttl: float) -> int:
        return self.join(key, member, ttl)

    async def aleave(self, key: str, member: str) -> int:
        return self.leave(key, member)

    async def amembers(self, key: str) -> list[str]:
        return self.members(key)


def _degrades(fallback):
    """With Redis away, a roster call logs (now and then) and answers `fallback` (nobody there: a value, or a
    function of the call's arguments) instead of raising. Presence only steers pushes and video; a camera must
    still connect and send while Redis is down. Entries come back with the next refresh (every ping tick)."""
    import redis

    def warn(exc: Exception) -> None:
        now = time.monotonic()
        if now - _warned[0] >= WARN_EVERY_S:
            _warned[0] = now
            log.warning("presence: Redis unreachable (%s); rosters read as empty until it is back", exc)

    def decorate(method):
        if asyncio.iscoroutinefunction(method):

            @functools.wraps(method)
            async def async_call(*args, **kwargs):
                try:
                    return await method(*args, **kwargs)
                except (redis.RedisError, OSError) as exc:
                    warn(exc)
                    return fallback(*args, **kwargs) if callable(fallback) else fallback

            return async_call

        @functools.wraps(method)
        def call(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except (redis.RedisError, OSError) as exc:
                warn(exc)
                return fallback(*args, **kwargs) if callable(fallback) else fallback

        return call

    return decorate


_warned = [float("-inf")]


class _RedisRoster:
    """Sorted sets scored by expiry; each call is one MULTI round trip. Degrades to "nobody" while Redis is away."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sync = None
        self._async: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # redis.asyncio clients are per loop

    def _client(self):
        if self._sync is None:
            import redis

            self._sync = redis.Redis.from_url(self.url)
        return self._sync

    def _aclient(self):
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            import redis.asyncio

            client = self._async[loop] = redis.asyncio.Redis.from_url(self.url)
        return client

    @staticmethod
    def _join(pipe, key: str, member: str, ttl: float) -> None:
        now = time.time()
        pipe.zadd(key, {member: now + ttl})
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zcard(key)
        pipe.expire(key, int(ttl) + 1)

    @staticmethod
    def _leave(pipe, key: str, member: str) -> None:
        pipe.zrem(key, member)
        pipe.zremrangebyscore(key, "-inf", time.time())
        pipe.zcard(key)

    @_degrades(0)
    def join(self, key: str, member: str, ttl: float) -> int:
        pipe = self._client().pipeline()
        self._join(pipe, key, member, ttl)
        return pipe.execute()[2]

    @_degrades(0)
    def leave(self, key: str, member: str) -> int:
        pipe = self._client().pipeline()
        self._leave(pipe, key, member)
        return pipe.execute()[2]

    @_degrades(lambda *_: [])
    def members(self, key: str) -> list[str]:
        return [m.decode() for m in self._client().zrangebyscore(key, time.time(), "+inf")]

    @_degrades(lambda self, keys: [[] for _ in keys])
    def members_many(self, keys: list[str]) -> list[list[str]]:
        pipe, now = self._client().pipeline(transaction=False), time.time()
        for key in keys:
            pipe.zrangebyscore(key, now, "+inf")
        return [[m.decode() for m in found] for found in pipe.execute()]

    @_degrades(0)
    async def ajoin(self, key: str, member: str, ttl: float) -> int:
        pipe = self._aclient().pipeline()
        self._join(pipe, key, member, ttl)
        return (await pipe.execute())[2]

    @_degrades(0)
    async def aleave(self, key: str, member: str) -> int:
        pipe = self._aclient().pipeline()
        self._leave(pipe, key, member)
        return (await pipe.execute())[2]

    @_degrades(lambda *_: [])
    async def amembers(self, key: str) -> list[str]:
        return [m.decode() for m in await self._aclient().zrangebyscore(key, time.time(), "+inf")]


_roster: _MemoryRoster | _RedisRoster | None = None


def roster() -> _MemoryRoster | _RedisRoster:
    global _roster
    if _roster is None:
        _roster = _RedisRoster(settings.REDIS_URL) if settings.REDIS_URL else _MemoryRoster()
    return _roster


def _connections_key(device_id: str) -> str:
    return f"{KEY_PREFIX}conn:{device_id}"


def _viewers_key(device_id: str) -> str:
    return f"{KEY_PREFIX}viewers:{device_id}"


# --- camera connections ---------------------------------------------------------------


async def connected(device_id: str, transport: str, connection_id: str) -> None:
    await roster().ajoin(_connections_key(device_id), f"{transport}|{connection_id}", entry_ttl_s())


refreshed = connected  # the same write: the entry's expiry moves forward


async def disconnected(device_id: str, transport: str, connection_id: str) -> None:
    await roster().aleave(_connections_key(device_id), f"{transport}|{connection_id}")


def connections_of(device_id: str) -> list[tuple[str, str]]:
    """(transport, connection id) of every open connection the device holds, on any server process."""
    return [tuple(m.split("|", 1)) for m in roster().members(_connections_key(device_id))]  # type: ignore[misc]


async def aconnections_of(device_id: str) -> list[tuple[str, str]]:
    return [tuple(m.split("|", 1)) for m in await roster().amembers(_connections_key(device_id))]  # type: ignore[misc]


def transports_of(device_id: str) -> set[str]:
    return {transport for transport, _ in connections_of(device_id)}


def transports_of_many(device_ids: list[str]) -> dict[str, set[str]]:
    """`transports_of` for many devices in one round trip (the watch loop asks for the whole fleet each pass)."""
    found = roster().members_many([_connections_key(d) for d in device_ids])
    return {d: {m.split("|", 1)[0] for m in members} for d, members in zip(device_ids, found)}


def is_connected(device_id: str) -> bool:
    return bool(connections_of(device_id))


# --- video viewers ----------------------------------------------------------------------


async def viewer_joined(device_id: str, viewer_id: str) -> int:
    """Add (or refresh) a viewer; return how many watch the device now."""
    return await roster().ajoin(_viewers_key(device_id), viewer_id, entry_ttl_s())


async def viewer_left(device_id: str, viewer_id: str) -> int:
    return await roster().aleave(_viewers_key(device_id), viewer_id)


async def viewer_count(device_id: str) -> int:
    return len(await roster().amembers(_viewers_key(device_id)))


# --- measured latency ------------------------------------------------------------------


def record_latency(device_id: str, round_trip_ms: float, at: datetime | None = None) -> None:
    """Store the server's own ping round trip; the connectivity score reads it."""
    Device.objects.filter(pk=device_id).update(
        measured_latency_ms=round(round_trip_ms, 3), measured_latency_at=at or timezone.now()
    )
