import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from devices.credentials import create_device


class Command(BaseCommand):
    help = "Register a camera and print its credentials (shown once; only a hash of the key is stored)."

    def add_arguments(self, parser):
        parser.add_argument("device_id", help="e.g. CAM001: letters, digits, '_', '.', '-'")
        parser.add_argument("--name", default="")
        parser.add_argument("--site", default="")
        parser.add_argument("--location", default="")
        parser.add_argument("--require-signature", action="store_true", help="refuse unsigned REST requests")
        parser.add_argument("--json", action="store_true", help='print {"device_id", "key", "payload_key"}')

    def handle(self, *args, **opts):
        try:
            _, issued = create_device(
                opts["device_id"], name=opts["name"], site=opts["site"], location=opts["location"],
                require_signature=opts["require_signature"],
            )  # fmt: skip
        except ValidationError as exc:
            raise CommandError(f"Cannot create {opts['device_id']}: {'; '.join(exc.messages)}") from None
        if opts["json"]:
            self.stdout.write(json.dumps(issued.as_dict()))
            return
        self.stdout.write(f"Created {issued.device_id}. Keep these; they are not shown again.")
        self.stdout.write(f"  key:         {issued.key}")
        self.stdout.write(f"  payload key: {issued.payload_key}")
