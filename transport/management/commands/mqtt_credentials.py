import os
import secrets
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from devices.credentials import device_key
from devices.models import Device
from transport.mqtt.broker_files import access_list, password_file


class Command(BaseCommand):
    help = (
        "Write a Mosquitto password file (device id / device key, and a bridge account) and an access list "
        "confining each device to lpr/v1/devices/<its id>/#. Rerun after adding, rotating or deactivating devices."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="Directory for `passwd` and `acl`.")

    def handle(self, *args, out, **opts):
        username = os.environ.get("MQTT_BRIDGE_USERNAME", "lpr-bridge")
        password = os.environ.get("MQTT_BRIDGE_PASSWORD", "")
        if Device.objects.filter(id=username).exists():
            raise CommandError(f"A device is called {username!r}; set MQTT_BRIDGE_USERNAME to another name.")
        generated = not password
        password = password or secrets.token_urlsafe(24)
        devices = Device.objects.filter(active=True).order_by("id")
        accounts = [(username, password)] + [(d.id, device_key(d)) for d in devices]
        directory = Path(out)
        directory.mkdir(parents=True, exist_ok=True)
        _write(directory / "passwd", password_file(accounts))
        _write(directory / "acl", access_list(username))
        self.stdout.write(f"Wrote {directory / 'passwd'} ({len(accounts) - 1} devices + bridge) and {directory / 'acl'}.")
        if generated:
            self.stdout.write(f"Bridge account (set MQTT_URL=mqtt://{username}:<password>@host:1883): {username} {password}")


def _write(path: Path, text: str) -> None:
    # The password file holds only salted hashes, but there is no reason for anyone else to read it.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o640)
    tmp.replace(path)
