"""The web processes' own account of a latency phase: where a real-time ack's time went inside the server.

Each Daphne's `/metrics` is read when the measured window opens and again when the phase ends; the difference of
two histograms, summed over the web processes, gives percentiles, interpolated within a bucket as Prometheus'
`histogram_quantile` does:

    queue: a message queued by its socket or request → its write began   (lpr_realtime_wait_seconds)
    write: the write took its batch → the commit                          (lpr_ingest_commit_seconds, per batch)
    loop lag: how late the event loop ran a 50 ms timer                   (lpr_event_loop_lag_seconds)

The MQTT bridge's writes are not in these (it serves no /metrics); in the mixed phase they are the web
transports' share.
"""

from __future__ import annotations

import threading
import time
import urllib.request

from .stack import say

HISTOGRAMS = {"queue_ms": "lpr_realtime_wait_seconds", "write_ms": "lpr_ingest_commit_seconds",
              "lag_ms": "lpr_event_loop_lag_seconds"}
Buckets = dict[str, dict[float, float]]  # histogram name → upper bound (s) → cumulative count


def parse(text: str) -> Buckets:
    """The unlabelled histograms of HISTOGRAMS from Prometheus text."""
    out: Buckets = {name: {} for name in HISTOGRAMS.values()}
    for line in text.splitlines():
        name, _, rest = line.partition("_bucket{le=\"")
        if name in out:
            bound, _, count = rest.partition("\"} ")
            out[name][float("inf") if bound == "+Inf" else float(bound)] = float(count)
    return out


def scrape(urls: list[str]) -> Buckets:
    total: Buckets = {name: {} for name in HISTOGRAMS.values()}
    for url in urls:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
            for name, buckets in parse(answer.read().decode()).items():
                for bound, count in buckets.items():
                    total[name][bound] = total[name].get(bound, 0.0) + count
    return total


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile (seconds) of cumulative `buckets`: linear within the bucket it falls in; None when empty."""
    bounds = sorted(buckets)
    if not bounds or not buckets[bounds[-1]]:
        return None
    rank, lower, below = q * buckets[bounds[-1]], 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower  # beyond the last finite bound: say the bound, as histogram_quantile does
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


def figures(before: Buckets, after: Buckets) -> dict[str, dict[str, float | None]]:
    out = {}
    for key, name in HISTOGRAMS.items():
        grew = {bound: after[name].get(bound, 0.0) - before[name].get(bound, 0.0) for bound in after[name]}
        out[key] = {p: None if (v := quantile(q, grew)) is None else v * 1000
                    for p, q in (("p50", 0.5), ("p99", 0.99))}  # fmt: skip
    return out


class Window:
    """Reads the web processes' histograms at `opens_at` (epoch seconds) and at `close()`. A process that did not
    answer leaves the figures out (the table shows `-`), not the run."""

    def __init__(self, urls: list[str], opens_at: float) -> None:
        self.urls, self.before = urls, None
        self.timer = threading.Timer(max(0.0, opens_at - time.time()), self._open)
        self.timer.daemon = True
        self.timer.start()

    def _open(self) -> None:
        self.before = self._scrape()

    def close(self) -> dict[str, dict[str, float | None]]:
        self.timer.join()
        after = self._scrape() if self.before is not None else None
        return figures(self.before, after) if after is not None else {}

    def _scrape(self) -> Buckets | None:
        try:
            return scrape(self.urls)
        except OSError as exc:
            say(f"  server figures left out: /metrics did not answer ({exc})")
            return None
