"""What the benchmark puts in its database before the load: cameras, an operator's session, a watchlist.

Runs Django inside the benchmark process, against the benchmark database
(never the test database), with embedded defaults (no Redis) so nothing it
does reaches the running server except through the database.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WATCHLIST_PLATES = [f"WA{n:03d}NT" for n in range(1000)]  # traffic.js puts one car in 200 on it


@dataclass(frozen=True)
class Camera:
    id: str
    key: str
    token: str

    def as_dict(self) -> dict:
        return {"id": self.id, "key": self.key, "token": self.token}


def setup_django(database_url: str) -> None:
    """Django in this process, on `database_url`; the device tokens it issues live a day."""
    os.environ.update(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="lpr_server.settings", LOG_LEVEL="WARNING",
                      DEVICE_TOKEN_TTL_S="86400")  # fmt: skip
    os.environ["ALLOWED_HOSTS"] = ",".join(["testserver", "127.0.0.1", "localhost"])
    for name in ("REDIS_URL", "MQTT_URL"):
        os.environ.pop(name, None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def create_cameras(prefix: str, count: int) -> list[Camera]:
    from devices import credentials
    from transport import auth

    cameras = []
    for n in range(count):
        device, issued = credentials.create_device(f"{prefix}{n:02d}", site=f"site-{n % 4}")
        cameras.append(Camera(device.id, issued.key, auth.issue_token(device)[0]))
    return cameras


def operator_cookie() -> str:
    """The session cookie of a logged-in staff operator, as a browser sends it."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(username="bench-operator", defaults={"is_staff": True})
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def create_watchlist() -> None:
    """The plates a Celery worker matches every stored read against (exact entries)."""
    from detections.alert_models import Watchlist, WatchlistEntry

    watchlist = Watchlist.objects.create(name="bench")
    WatchlistEntry.objects.bulk_create([WatchlistEntry(watchlist=watchlist, value=p) for p in WATCHLIST_PLATES])
