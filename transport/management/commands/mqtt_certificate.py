import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from devices.models import Device
from transport.mqtt import certificates


class Command(BaseCommand):
    help = (
        "Certificates for MQTT over TLS (docs/mqtt.md): `ca` makes a private CA, `server NAME...` the broker's "
        "certificate, `device ID` a camera's client certificate (common name = device id)."
    )

    def add_arguments(self, parser):
        kinds = parser.add_subparsers(dest="kind", required=True)
        ca = kinds.add_parser("ca", help="a new CA: ca.crt and ca.key in --out")
        ca.add_argument("--out", required=True, type=Path)
        ca.add_argument("--name", default="LPR device CA", help="the CA's common name")
        server = kinds.add_parser("server", help="the broker's certificate: server.crt and server.key in --out")
        server.add_argument("names", nargs="+", help="host names and IP addresses cameras connect to")
        device = kinds.add_parser("device", help="a camera's certificate: <id>.crt and <id>.key in --out")
        device.add_argument("device_id")
        for sub in (server, device):
            sub.add_argument("--ca-dir", required=True, type=Path, help="where ca.crt and ca.key are")
            sub.add_argument("--out", required=True, type=Path)
            sub.add_argument("--days", type=int, default=certificates.DEVICE_DAYS)

    def handle(self, *args, kind, out, **opts):
        if kind == "ca":
            self._save(out, "ca", certificates.new_ca(opts["name"]))
            return
        ca = self._load_ca(opts["ca_dir"])
        if kind == "server":
            self._save(out, "server", certificates.server_certificate(opts["names"], ca, opts["days"]))
            return
        device_id = opts["device_id"]
        device = Device.objects.filter(pk=device_id).first()
        if device is None or not device.active:
            raise CommandError(f"No active device {device_id!r}: create it (create_device) or activate it first.")
        self._save(out, device_id, certificates.device_certificate(device_id, ca, opts["days"]))

    def _load_ca(self, directory: Path) -> certificates.Issued:
        try:
            return certificates.Issued.load((directory / "ca.crt").read_bytes(), (directory / "ca.key").read_bytes())
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot read the CA from {directory} ({exc}); make one with `mqtt_certificate ca`.")

    def _save(self, directory: Path, stem: str, issued: certificates.Issued) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert.write_bytes(issued.cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # created private, never world-readable
        with os.fdopen(fd, "wb") as f:
            f.write(issued.key_pem)
        expires = issued.certificate.not_valid_after_utc.date()
        self.stdout.write(f"Wrote {cert} (until {expires}) and {key}.")
