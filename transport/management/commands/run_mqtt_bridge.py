import socket

from django.core.management.base import BaseCommand

from lpr_server import collector, shutdown
from transport.mqtt.bridge import Bridge, Limits
from transport.mqtt.client import SESSION_EXPIRY_S, BrokerAddress
from transport.mqtt.downlink import broker_url

DEFAULTS = Limits()


class Command(BaseCommand):
    help = "Bridge camera messages from the MQTT broker into the ingest pipeline (CONTRACT section 5)."

    def add_arguments(self, parser):
        parser.add_argument("--url", help="Broker URL; default MQTT_URL, else the embedded broker.")
        parser.add_argument("--shared", metavar="GROUP", help="Split the stream with other bridges (MQTT 5 shared subscription).")
        parser.add_argument("--client-id", help="Stable per bridge instance: the broker keeps its session under it.")
        parser.add_argument("--batch", type=int, default=DEFAULTS.max_messages, help="Most messages per transaction.")
        parser.add_argument("--batch-ms", type=float, default=DEFAULTS.max_wait_s * 1000, help="Longest wait to fill a batch.")
        parser.add_argument("--lanes", type=int, default=DEFAULTS.lanes,
                            help="Storage threads; a device's messages always go to the same one.")
        parser.add_argument("--session-expiry", type=int, default=SESSION_EXPIRY_S, help="Seconds the broker keeps the session.")

    def handle(self, *args, url, shared, client_id, batch, batch_ms, lanes, session_expiry, **opts):
        client_id = client_id or f"lpr-bridge-{socket.gethostname()}" + (f"-{shared}" if shared else "")
        receive_maximum = max(DEFAULTS.receive_maximum, 2 * batch)
        limits = Limits(max_messages=batch, max_wait_s=batch_ms / 1000, receive_maximum=receive_maximum, lanes=lanes)
        bridge = Bridge(BrokerAddress.from_url(url or broker_url()), client_id, shared, limits, session_expiry)
        stop = shutdown.stop_on_signals()
        collector.prepare_server_process()
        self.stdout.write(f"MQTT bridge {client_id} running; SIGTERM stops it after the batch in flight.")
        bridge.run(stop)
        shutdown.close_database_pools()
        self.stdout.write(f"MQTT bridge {client_id} stopped after settling {bridge.handled} message(s).")
