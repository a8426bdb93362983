import json
from pathlib import Path

from django.core.management.base import BaseCommand

from devices.credentials import create_device, rotate_key
from devices.models import Device


class Command(BaseCommand):
    help = "Register demo cameras DEMO01… (or give existing ones fresh keys) and write their credentials for the simulator."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=3)
        parser.add_argument("--out", required=True, help="JSON file the simulator reads (--credentials)")

    def handle(self, *args, count, out, **opts):
        issued = []
        for n in range(1, count + 1):
            device_id = f"DEMO{n:02d}"
            device = Device.objects.filter(pk=device_id).first()
            if device is None:
                _, creds = create_device(device_id, name=f"Demo camera {n}", site="demo")
            else:
                creds = rotate_key(device)  # keys are shown once: a new run needs new ones
            issued.append(creds.as_dict())
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(issued, indent=2))
        path.chmod(0o600)
        self.stdout.write(f"{count} demo camera(s) ready; credentials in {path}")
