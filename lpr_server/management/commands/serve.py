import importlib

from django.conf import settings
from django.core.management.base import BaseCommand

from devices import watch
from lpr_server import collector
from lpr_server.web_server import DaphneCLI
from transport.mqtt.service import start_beside_server


class Command(BaseCommand):
    help = "Serve HTTP, WebSocket and Socket.IO under Daphne, with the MQTT bridge (and, without MQTT_URL, a broker)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--access-log", action="store_true",
                            help="log every request to stdout, keys and tokens in URLs masked (costs throughput)")
        parser.add_argument("--no-mqtt", action="store_true", help="start no MQTT bridge or broker (run_mqtt_bridge runs elsewhere)")
        parser.add_argument("--no-watch", action="store_true", help="run no device watch loop here (run_device_watch runs elsewhere)")

    def handle(self, *args, host, port, access_log, no_mqtt, no_watch, **opts):
        importlib.import_module("lpr_server.asgi")  # loaded before the collector freezes what is loaded
        collector.prepare_server_process()
        logging = ["--access-log", "-"] if access_log else ["-v", "0"]
        stop_mqtt = (lambda: None) if no_mqtt else start_beside_server(host, port)
        # Presence, offline detection, command re-sends and expiry need a loop; without REDIS_URL presence
        # lives in this process's memory, so the loop must run here. Passes are idempotent across processes.
        stop_watch = None if no_watch else watch.start_thread(settings.DEVICE_WATCH_INTERVAL_S)
        try:
            # Cameras hold their WebSocket for weeks: no Daphne-imposed lifetime (its default closes them after 24 h).
            DaphneCLI().run(
                ["-b", host, "-p", str(port), "--proxy-headers", "--websocket_timeout", "-1", *logging,
                 "lpr_server.asgi:application"]
            )  # fmt: skip
        finally:
            if stop_watch:
                stop_watch.set()
            stop_mqtt()
