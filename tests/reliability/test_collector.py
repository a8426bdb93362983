"""A server process leaves its startup objects out of garbage collection, and reports every collector pause."""

from __future__ import annotations

import gc
import sys

import pytest
import requests

from tests.realtime.conftest import start_server

from .conftest import scrape

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_run_command_freezes_its_startup_objects_and_reports_collector_pauses(redis_db, tmp_path):
    server = start_server(tmp_path, [sys.executable, "manage.py", "serve", "--no-mqtt", "--no-watch", "--port", "{port}"])
    try:
        for _ in range(20):  # some work, so that the collector runs
            requests.get(f"{server.http}/healthz", timeout=5)
        figures = scrape(server)
    finally:
        server.stop()
    # Django, Channels, DRF, Socket.IO and the project's own modules: far more than a bare interpreter holds.
    assert figures["lpr_gc_frozen_objects"] > 50_000
    # The full collection made just before freezing is the first pause the process reports.
    count = figures['lpr_gc_pause_seconds_count{generation="2"}']
    assert count >= 1 and figures['lpr_gc_pause_seconds_bucket{generation="2",le="+Inf"}'] == count


@pytest.fixture
def unfrozen_after():
    yield
    gc.unfreeze()


@pytest.mark.parametrize("signal", ["worker_ready", "worker_process_init"])
def test_a_celery_worker_freezes_its_startup_objects(signal, unfrozen_after):
    import celery.signals

    gc.unfreeze()
    getattr(celery.signals, signal).send(sender=None)  # what Celery sends once a worker (or a prefork child) is up
    assert gc.get_freeze_count() > 50_000
