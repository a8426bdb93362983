import os
import secrets
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from lpr_server import shutdown
from transport.mqtt import broker_files


class Command(BaseCommand):
    help = (
        "Write a Mosquitto password file (device id / device key, and a bridge account) and an access list "
        "confining each active device to lpr/v1/devices/<its id>/#. With --watch, keep them current: rewrite "
        "them whenever a device is added, rotated or deactivated, and SIGHUP the broker (--reload-pid-file)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="Directory for `passwd` and `acl`.")
        parser.add_argument("--watch", type=float, metavar="SECONDS", help="check for changes every SECONDS")
        parser.add_argument("--reload-pid-file", type=Path, help="Mosquitto's pid_file: SIGHUP it after each write")

    def handle(self, *args, out, watch, reload_pid_file, **opts):
        username = os.environ.get("MQTT_BRIDGE_USERNAME", "lpr-bridge")
        password = os.environ.get("MQTT_BRIDGE_PASSWORD", "")
        if watch and not password:
            raise CommandError("--watch needs MQTT_BRIDGE_PASSWORD: a password made up at each write would lock the bridge out.")
        bridge = broker_files.BridgeAccount(username, password or secrets.token_urlsafe(24))
        if not watch:
            self._write(Path(out), bridge, reload_pid_file)
            if not password:
                self.stdout.write(f"Bridge account (set MQTT_URL=mqtt://{username}:<password>@host:1883): {username} {bridge.password}")
            return
        stop = shutdown.stop_on_signals()
        self.stdout.write(f"Watching devices every {watch:g} s; SIGTERM stops.")
        last = None
        while not stop.is_set():
            close_old_connections()  # hours between changes: a connection the database dropped must not stick
            state = broker_files.credentials_state()
            if state != last:
                self._write(Path(out), bridge, reload_pid_file)
                last = state
            stop.wait(watch)
        shutdown.close_database_pools()

    def _write(self, directory: Path, bridge: broker_files.BridgeAccount, reload_pid_file: Path | None) -> None:
        try:
            count = broker_files.write(directory, bridge)
        except ValueError as exc:
            raise CommandError(f"{exc} (MQTT_BRIDGE_USERNAME)") from None
        note = ""
        if reload_pid_file is not None:
            try:
                note = f"; broker (pid {broker_files.reload_broker(reload_pid_file)}) reloaded"
            except (OSError, ValueError) as exc:
                note = f"; could not reload the broker from {reload_pid_file}: {exc}"
        self.stdout.write(f"Wrote {directory / 'passwd'} ({count} devices + bridge) and {directory / 'acl'}{note}.")
        self.stdout.flush()
