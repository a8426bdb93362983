from daphne.cli import CommandLineInterface
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve HTTP, WebSocket and Socket.IO under Daphne."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--access-log", action="store_true", help="log every request to stdout (costs throughput)")

    def handle(self, *args, host, port, access_log, **opts):
        logging = ["--access-log", "-"] if access_log else ["-v", "0"]
        CommandLineInterface().run(["-b", host, "-p", str(port), "--proxy-headers", *logging, "lpr_server.asgi:application"])
