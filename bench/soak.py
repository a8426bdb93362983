"""The soak: is the memory of every process flat (within 10 %) under 1,000 detections/s of mixed transports?

The sampler reads every process's resident memory every 10 s; the first
sample counted is the first of the measured window (after the warm-up).
PostgreSQL's figure is its largest process, which grows as a backend touches
more of the shared buffers, and Redis is shared with other users of the
machine: both are shown, not judged.
"""

from __future__ import annotations

from .sampler import MB, Sampler

JUDGED = ("daphne", "nginx", "bridge", "worker", "watch", "mosquitto")  # daphne: all web processes together
SHOWN = ("postgres", "redis", "client")
FLAT_WITHIN = 0.10


def memory(sampler: Sampler, figures: dict) -> dict:
    start, end = (t / 1e6 for t in figures["window_us"])
    inside = [s for s in sampler.samples if start <= s.at <= end]
    out = {}
    for group in (*JUDGED, *SHOWN):
        series = [s.rss[group] / MB for s in inside if group in s.rss]
        if not series:
            continue
        change = (series[-1] - series[0]) / series[0]
        out[group] = {"first_mb": series[0], "last_mb": series[-1], "peak_mb": max(series), "change": change,
                      "samples": len(series),
                      "flat": abs(change) <= FLAT_WITHIN if group in JUDGED else None}  # fmt: skip
    return out


def table(soak: dict) -> str:
    lines = [f"{'memory over the soak':<22} {'first MB':>9} {'last MB':>9} {'peak MB':>9} {'change':>8}  "
             f"target: flat within {FLAT_WITHIN:.0%}"]  # fmt: skip
    for group, m in soak.items():
        verdict = {True: "PASS", False: "FAIL", None: "(not judged)"}[m["flat"]]
        lines.append(f"{group:<22} {m['first_mb']:>9.1f} {m['last_mb']:>9.1f} {m['peak_mb']:>9.1f} "
                     f"{m['change']:>+8.1%}  {verdict}")  # fmt: skip
    return "\n".join(lines)
