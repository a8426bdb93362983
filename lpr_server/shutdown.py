"""How the long-running commands (`run_mqtt_bridge`, `run_device_watch`, `mqtt_credentials --watch`) stop.

SIGTERM or SIGINT sets an event; the command finishes the work in flight,
closes its database pool and returns. Two things make that exit prompt:

- The pool is closed while its worker threads still run. Left to interpreter
  exit, psycopg_pool's finaliser joins threads that exit has already frozen,
  5 s each: a process that had stopped its work still took 20 s and more to go.
- A watchdog: if the process is still there `STOP_DEADLINE_S` after the signal,
  it writes every thread's stack to stderr (its log) and exits with status 1.
  Nothing is lost by that: what was not acknowledged is redelivered.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading

from django.db import connections

STOP_DEADLINE_S = 15.0


def stop_on_signals(deadline_s: float = STOP_DEADLINE_S) -> threading.Event:
    """An event set by SIGTERM or SIGINT, which also arm the watchdog. Call from the main thread.

    The main thread should then wait on the event, not on a queue: CPython 3.11's `SimpleQueue.get(timeout=...)`
    waits forever when a signal handler outlasts what was left of its timeout (transport.mqtt.bridge).
    """
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        faulthandler.dump_traceback_later(deadline_s, exit=True, file=sys.stderr)
        # Not stop.set() here: the handler runs on the main thread between two bytecodes, possibly while that
        # thread holds the event's lock inside stop.wait(), and the lock is not reentrant.
        threading.Thread(target=stop.set, name="lpr-stop-signal").start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    return stop


def close_database_pools() -> None:
    """Close this process's database connection pools (PostgreSQL with DB_POOL); other backends: its connections."""
    for connection in connections.all(initialized_only=True):
        connection.close()  # gives a pooled connection back first: close_pool() only closes what is in the pool
        if connection.settings_dict.get("OPTIONS", {}).get("pool"):
            connection.close_pool()
