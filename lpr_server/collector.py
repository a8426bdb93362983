"""Python's garbage collector in a long-running server process: startup objects frozen, pauses measured.

A full (generation 2) collection walks every object the collector tracks,
and in a server process most of them are the modules, classes and functions
loaded at startup, which live as long as the process. Walking those ~150,000
objects took 60-90 ms of CPU on the benchmark machine, every few seconds
under load: a pause that every socket and writer thread of the process waits
through, and at 1,000 messages/s it set the ack p99. Frozen once after
startup (`gc.freeze`), they are left out, and a full collection walks only
what was made since (~6 ms there). Pauses are exported as
`lpr_gc_pause_seconds{generation}` so an operator can see them.
"""

from __future__ import annotations

import gc
import time

from transport import metrics

_started_at = [0.0]  # a collection never starts while another runs, so one slot is enough


def prepare_server_process() -> None:
    """For `serve`, the MQTT bridge and Celery workers: call once everything the process runs is imported. Measures
    pauses from now on, collects once, then leaves everything alive now out of future collections."""
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)
    gc.collect()
    gc.freeze()


def _on_collection(phase: str, info: dict) -> None:
    if phase == "start":
        _started_at[0] = time.perf_counter()
    else:
        metrics.gc_pauses.observe_in_collector(time.perf_counter() - _started_at[0], info["generation"])
