"""Dashboard events to every dashboard socket of every server process.

Dashboards are a broadcast: each socket on each process gets every event.
With REDIS_URL each process PUBLISHes its encoded events on one Redis
pub/sub channel, and one subscriber per server process hands what arrives
to that process's sockets; without it, events go straight to this
process's sockets.

Pub/sub rather than the channel layer's groups: channels-redis takes four
Redis round trips through the event loop to receive each channel-layer
message, so a busy server process received fewer messages a second than
several processes (web, MQTT bridge, worker) sent it, and dashboards fell
seconds behind at 1,000 mixed reads a second. A subscriber takes whatever
Redis has pushed in one read.

A message is `<count>\\n<JSON list of events>`. Events published while Redis
is away, or while a subscriber reconnects, are lost to live views (the data
is stored; docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import redis.asyncio as aioredis
from django.conf import settings

from .channel_layer import REDIS_DOWN, RETRY_MAX_S, RETRY_MIN_S  # the same outage, ridden out the same way

log = logging.getLogger(__name__)

CHANNEL = "lpr.live.dashboard"
IDLE_READ_S = 1.0  # a subscriber's read returns this often when nothing comes, so a dead link is noticed

Sink = Callable[[bytes, int], None]  # (events as a JSON list, how many), called on the server's loop

_sinks: set[Sink] = set()
_publishers: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
_subscriber: asyncio.Task | None = None


def join(sink: Sink) -> None:
    """Deliver every dashboard event to `sink` from now on. Call on the server's loop."""
    global _subscriber
    _sinks.add(sink)
    if settings.REDIS_URL and (_subscriber is None or _subscriber.done()):
        _subscriber = asyncio.get_running_loop().create_task(_subscribe())


def leave(sink: Sink) -> None:
    _sinks.discard(sink)


def local_sinks() -> int:
    """How many of this process's sockets receive dashboard events."""
    return len(_sinks)


async def publish(events_json: bytes, count: int) -> None:
    """Send encoded events to every dashboard of every process (or of this one, without Redis)."""
    if not settings.REDIS_URL:
        _deliver(events_json, count)
        return
    await _publisher().publish(CHANNEL, b"%d\n%s" % (count, events_json))


def _publisher() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _publishers.get(loop)
    if client is None:  # a client belongs to the loop it was made on
        client = _publishers[loop] = aioredis.from_url(settings.REDIS_URL)
    return client


def _deliver(events_json: bytes, count: int) -> None:
    for sink in list(_sinks):
        sink(events_json, count)


async def _subscribe() -> None:
    """Hand what the channel carries to this process's sinks, reconnecting (with backoff) when Redis goes away."""
    delay = RETRY_MIN_S
    while True:
        client = aioredis.from_url(settings.REDIS_URL)
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as subscription:
                await subscription.subscribe(CHANNEL)
                if delay > RETRY_MIN_S:
                    log.warning("live: Redis is back; dashboards receive events again")
                delay = RETRY_MIN_S
                while True:
                    message = await subscription.get_message(timeout=IDLE_READ_S)
                    if message is not None:
                        count, _, events_json = message["data"].partition(b"\n")
                        _deliver(events_json, int(count))
        except REDIS_DOWN as exc:
            if delay == RETRY_MIN_S:
                log.warning("live: Redis is unreachable (%s); dashboards wait for it", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
        finally:
            await client.aclose()
