import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from devices import watch

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Presence, command delivery/re-sends/expiry and protocol selection for every device, every second."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=settings.DEVICE_WATCH_INTERVAL_S)
        parser.add_argument("--once", action="store_true", help="one pass, then exit")

    def handle(self, *args, interval, once, **opts):
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        cursor = watch.Cursor()
        self.stdout.write(f"device watch running every {interval:g} s", ending="\n")
        self.stdout.flush()
        while not stop.is_set():
            # A long-running process never goes through Django's request cycle, which is what normally
            # drops a broken or over-age database connection: do it here, before each pass.
            close_old_connections()
            try:
                watch.tick(cursor)
            except Exception:  # a database outage or a bug in one pass must not end the loop
                log.exception("device watch pass failed; retrying next interval")
            if once:
                break
            stop.wait(interval)
