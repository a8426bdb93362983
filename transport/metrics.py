"""In-process counters for `/metrics` (Prometheus text format)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .pipeline import Ack, Inbound

_lock = threading.Lock()
ingest_total: Counter[tuple[str, str]] = Counter()


def count_acks(items: Sequence["Inbound"], acks: Sequence["Ack"]) -> None:
    tally = Counter((item.via, ack.status) for item, ack in zip(items, acks))
    with _lock:
        ingest_total.update(tally)


def count_refusal(via: str) -> None:
    with _lock:
        ingest_total[(via, "refused")] += 1


def render() -> str:
    lines = [
        "# HELP lpr_ingest_messages_total Envelopes handled by the ingest pipeline, by transport and outcome.",
        "# TYPE lpr_ingest_messages_total counter",
    ]
    with _lock:
        for (via, status), n in sorted(ingest_total.items()):
            lines.append(f'lpr_ingest_messages_total{{transport="{via}",status="{status}"}} {n}')
    return "\n".join(lines) + "\n"
