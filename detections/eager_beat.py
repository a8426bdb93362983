"""Celery beat's stand-in for the run command: with no REDIS_URL there is no broker, worker or beat process.

`ensure_started` (called by alert intake when data is first stored in eager
mode) starts one daemon thread that runs every CELERY_BEAT_SCHEDULE entry
in-process at its interval, so rollups and retention still happen on a laptop.
With a broker it does nothing: `celery beat` owns the schedule.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import connection

log = logging.getLogger(__name__)

_started = threading.Event()
_lock = threading.Lock()


def ensure_started() -> None:
    if _started.is_set() or not settings.CELERY_TASK_ALWAYS_EAGER:
        return
    with _lock:
        if not _started.is_set():
            _started.set()
            threading.Thread(target=_run, name="lpr-eager-beat", daemon=True).start()


def scheduled_tasks(app) -> dict:
    """The task of each CELERY_BEAT_SCHEDULE entry, by entry name."""
    app.loader.import_default_modules()  # autodiscovery is lazy: a web process has imported no tasks module yet
    return {name: app.tasks[entry["task"]] for name, entry in settings.CELERY_BEAT_SCHEDULE.items()}


def _run() -> None:
    from lpr_server.celery import app

    tasks = scheduled_tasks(app)
    start = time.monotonic()  # each entry first runs after one interval (at most 5 s): let the server settle first
    due = {name: start + min(5.0, float(e["schedule"])) for name, e in settings.CELERY_BEAT_SCHEDULE.items()}
    while True:
        now = time.monotonic()
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
            if now >= due[name]:
                due[name] = now + float(entry["schedule"])
                try:
                    tasks[name].apply()
                except Exception:
                    log.exception("eager beat: %s failed", entry["task"])
                finally:
                    connection.close()  # this thread outlives requests; hold no database session between runs
        time.sleep(max(0.5, min(due.values()) - time.monotonic()))
