"""What the project's Channels consumers share: no database housekeeping per message."""

from __future__ import annotations

from channels.consumer import get_handler_name
from channels.db import aclose_old_connections


class NoHousekeepingPerMessage:
    """Channels runs close_old_connections() before every handler: a hop to the sync thread and back for
    each frame a camera or a browser sends and each channel-layer message. These consumers query the database
    through `database_sync_to_async` (which does it itself) or the batch writers (transport.batching), and
    through the async ORM only while connecting, so it runs before `connect` alone."""

    async def dispatch(self, message: dict) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        if message["type"] == "websocket.connect":
            await aclose_old_connections()
        await handler(message)
