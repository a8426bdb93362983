"""Browser sockets (live dashboard, live video) are for operators, as the pages that open them."""

from __future__ import annotations

from channels.db import database_sync_to_async

from devices.permissions import is_operator
from transport.errors import CLOSE_CODES


async def refusal(user) -> int | None:
    """The close code for a socket whose session is not an operator's (4401 anonymous, 4403 others), else None."""
    if user is None or not user.is_authenticated:
        return CLOSE_CODES["unauthenticated"]
    if not await database_sync_to_async(is_operator)(user):
        return CLOSE_CODES["forbidden"]
    return None
