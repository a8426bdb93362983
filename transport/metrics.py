"""In-process figures for `/metrics` (Prometheus text format): counts, latencies and queue depths.

Each server process keeps its own; Prometheus scrapes every process and sums.

    lpr_ingest_messages_total{transport,status}   envelopes handled, by transport and outcome
    lpr_ingest_latency_seconds{transport}         camera timestamp → commit, per stored message
    lpr_ingest_commit_seconds                     pipeline took a batch → its commit, per batch
    lpr_realtime_wait_seconds                     a message queued by a socket or REST request → its write began
    lpr_event_loop_lag_seconds                    how late the process's event loop ran a timer (transport.loop_lag)
    lpr_queue_depth{queue}                        items waiting in a bounded buffer, read at scrape time
    lpr_live_events_dropped_total                 live events dropped by a full buffer (dashboards only)
    lpr_gc_pause_seconds{generation}              garbage-collector pauses (lpr_server.collector)
    lpr_gc_frozen_objects                         objects left out of collections since startup
"""

from __future__ import annotations

import bisect
import gc
import threading
from collections import Counter
from typing import TYPE_CHECKING, Callable, Sequence

from django.utils import timezone

if TYPE_CHECKING:
    from .pipeline import Ack, Inbound
    from .store import Stored

_lock = threading.Lock()
ingest_total: Counter[tuple[str, str]] = Counter()
live_events_dropped = 0
_depths: dict[str, Callable[[], int]] = {}


class Histogram:
    """Cumulative buckets by one label, as Prometheus histograms are exposed."""

    def __init__(self, name: str, help_text: str, buckets: Sequence[float], label: str | None = None,
                 label_values: Sequence[str] = ()) -> None:  # fmt: skip
        self.name, self.help, self.label = name, help_text, label
        self.bounds = sorted(buckets)
        self._series: dict[str, tuple[list[int], list[float]]] = {}  # label value → (bucket counts, [sum])
        for value in label_values:  # series that exist before their first observation
            self._series[value] = ([0] * (len(self.bounds) + 1), [0.0])

    def observe(self, seconds: float, label_value: str = "") -> None:
        self.observe_many([seconds], label_value)

    def observe_many(self, values: Sequence[float], label_value: str = "") -> None:
        with _lock:
            counts, total = self._series.setdefault(label_value, ([0] * (len(self.bounds) + 1), [0.0]))
            for seconds in values:
                counts[bisect.bisect_left(self.bounds, seconds)] += 1
            total[0] += sum(values)

    def observe_in_collector(self, seconds: float, generation: int) -> None:
        """`observe` for a garbage-collector callback, which must not take `_lock`: a collection may start
        in a thread that holds it. Collections never overlap, so the callback is each series' only writer;
        the series exist from the start, so the dict never changes under a render."""
        counts, total = self._series[str(generation)]
        counts[bisect.bisect_left(self.bounds, seconds)] += 1
        total[0] += seconds

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with _lock:
            for value, (counts, total) in sorted(self._series.items()):
                label = f'{self.label}="{value}",' if self.label else ""
                running = 0
                for bound, n in zip([*map(_number, self.bounds), "+Inf"], counts):
                    running += n
                    lines.append(f'{self.name}_bucket{{{label}le="{bound}"}} {running}')
                braces = f"{{{label.rstrip(',')}}}" if label else ""
                lines += [f"{self.name}_sum{braces} {total[0]:.6f}", f"{self.name}_count{braces} {running}"]
        return lines


ingest_latency = Histogram(
    "lpr_ingest_latency_seconds", "From the camera's message timestamp to the commit of the message (camera clock).",
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600], label="transport",
)  # fmt: skip
# Fine buckets below 50 ms: these two make up most of a real-time ack's time, whose target is 10 ms.
_FINE = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
ingest_commit = Histogram(
    "lpr_ingest_commit_seconds", "From the pipeline taking a batch to its commit, per batch that stored something.",
    _FINE,
)  # fmt: skip
realtime_wait = Histogram(
    "lpr_realtime_wait_seconds",
    "From a message queued by a WebSocket or Socket.IO connection or a REST request to the start of its write.",
    _FINE, label_values=("",),
)  # fmt: skip
event_loop_lag = Histogram(
    "lpr_event_loop_lag_seconds", "How late the event loop ran a timer: what a socket's frames wait for the loop.",
    _FINE, label_values=("",),
)  # fmt: skip
gc_pauses = Histogram(
    "lpr_gc_pause_seconds", "Garbage-collector pauses of this process, by generation.",
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5], label="generation",
    label_values=("0", "1", "2"),
)  # fmt: skip


def count_acks(items: Sequence["Inbound"], acks: Sequence["Ack"]) -> None:
    tally = Counter((item.via, ack.status) for item, ack in zip(items, acks))
    with _lock:
        ingest_total.update(tally)


def count_refusal(via: str) -> None:
    with _lock:
        ingest_total[(via, "refused")] += 1


def on_stored(messages: list["Stored"]) -> None:
    """transport.announce consumer: runs right after the commit, so `now` is the commit time."""
    now = timezone.now()
    by_via: dict[str, list[float]] = {}
    for m in messages:
        by_via.setdefault(m.via, []).append(max(0.0, (now - m.envelope.timestamp).total_seconds()))
    for via, values in by_via.items():
        ingest_latency.observe_many(values, via)
    if messages:  # one call per committed batch, all of it taken by the pipeline at the same `received_at`
        ingest_commit.observe(max(0.0, (now - messages[0].received_at).total_seconds()))


def track_depth(queue: str, depth: Callable[[], int]) -> None:
    """Report `depth()` as `lpr_queue_depth{queue=...}` at every scrape."""
    _depths[queue] = depth


def count_dropped_live_events(n: int) -> None:
    global live_events_dropped
    with _lock:
        live_events_dropped += n


def render() -> str:
    lines = [
        "# HELP lpr_ingest_messages_total Envelopes handled by the ingest pipeline, by transport and outcome.",
        "# TYPE lpr_ingest_messages_total counter",
    ]
    with _lock:
        for (via, status), n in sorted(ingest_total.items()):
            lines.append(f'lpr_ingest_messages_total{{transport="{via}",status="{status}"}} {n}')
    lines += ingest_latency.render() + ingest_commit.render() + realtime_wait.render() + event_loop_lag.render()
    lines += gc_pauses.render()
    lines += [
        "# HELP lpr_gc_frozen_objects Objects left out of garbage collection since startup (gc.freeze).",
        "# TYPE lpr_gc_frozen_objects gauge",
        f"lpr_gc_frozen_objects {gc.get_freeze_count()}",
    ]
    lines += ["# HELP lpr_queue_depth Items waiting in a bounded in-process buffer.", "# TYPE lpr_queue_depth gauge"]
    for queue, depth in sorted(_depths.items()):
        lines.append(f'lpr_queue_depth{{queue="{queue}"}} {depth()}')
    lines += [
        "# HELP lpr_live_events_dropped_total Live dashboard events dropped because a buffer was full.",
        "# TYPE lpr_live_events_dropped_total counter",
        f"lpr_live_events_dropped_total {live_events_dropped}",
    ]
    return "\n".join(lines) + "\n"


def _number(bound: float) -> str:
    return f"{bound:g}"
