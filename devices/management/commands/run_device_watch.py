from django.conf import settings
from django.core.management.base import BaseCommand

from devices import watch
from lpr_server import shutdown


class Command(BaseCommand):
    help = "Presence, command delivery/re-sends/expiry and protocol selection for every device, every second."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=settings.DEVICE_WATCH_INTERVAL_S)
        parser.add_argument("--once", action="store_true", help="one pass, then exit")

    def handle(self, *args, interval, once, **opts):
        if once:
            self.stdout.write(str(watch.tick(watch.Cursor())))
            return
        stop = shutdown.stop_on_signals()
        self.stdout.write(f"device watch running every {interval:g} s; SIGTERM stops it after the pass in flight.")
        self.stdout.flush()
        watch.run(stop, interval)
        shutdown.close_database_pools()
        self.stdout.write("device watch stopped.")
