"""What happens after camera data is committed.

The pipeline calls `stored` from `transaction.on_commit`, so nothing here
runs for data that was rolled back, and nothing here may hold up the ack:
each consumer only hands the batch on (to the live-broadcast buffer, to
a queued Celery task), never does the work inline.
"""

from __future__ import annotations

import logging

from .store import Stored

log = logging.getLogger(__name__)

# Consumers registered by the apps that act on committed data (live dashboards, alert matching).
consumers: list = []


def stored(messages: list[Stored]) -> None:
    for consumer in consumers:
        try:
            consumer(messages)
        except Exception:  # one failing consumer must not starve the others
            log.exception("post-commit consumer %r failed", consumer)
