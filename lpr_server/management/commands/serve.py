from daphne.cli import CommandLineInterface
from django.core.management.base import BaseCommand

from transport.mqtt.service import start_beside_server


class Command(BaseCommand):
    help = "Serve HTTP, WebSocket and Socket.IO under Daphne, with the MQTT bridge (and, without MQTT_URL, a broker)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--access-log", action="store_true", help="log every request to stdout (costs throughput)")
        parser.add_argument("--no-mqtt", action="store_true", help="start no MQTT bridge or broker (run_mqtt_bridge runs elsewhere)")

    def handle(self, *args, host, port, access_log, no_mqtt, **opts):
        logging = ["--access-log", "-"] if access_log else ["-v", "0"]
        stop_mqtt = (lambda: None) if no_mqtt else start_beside_server(host, port)
        try:
            CommandLineInterface().run(["-b", host, "-p", str(port), "--proxy-headers", *logging, "lpr_server.asgi:application"])
        finally:
            stop_mqtt()
