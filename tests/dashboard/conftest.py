"""Browser-test helpers: a Daphne server (`manage.py serve`) on the test database and Redis, Debian's Chromium
driven by Playwright, a logged-in operator, seeded camera data and screenshots under test-artifacts/dashboard/.

The server is a subprocess sharing the pytest-django test database and this
run's Redis database, so tests that use it are `django_db(transaction=True)`:
it only sees committed rows, and events the test process commits reach the
server's dashboards through the Redis channel layer.
"""

from __future__ import annotations

import io
import json
import os
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.realtime.conftest import REPO, start_server

ARTIFACTS = REPO / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
PASSWORD = "secret-pass-123"


@pytest.fixture(scope="session")
def dash_server(django_db_setup, tmp_path_factory):
    """`manage.py serve` (Daphne) on a free port; MQTT is bridged by tests that need it."""
    import redis
    from django.conf import settings

    assert settings.REDIS_URL, "these tests need REDIS_URL (scripts/test sets it from TEST_REDIS_URL)"
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # this run's own Redis database: no stale presence
    # --no-watch: these tests stage fleet states (online, degraded, offline) in the database; the watch loop
    # would re-evaluate them from presence it cannot see. It has tests of its own (tests/devices).
    command = [sys.executable, "manage.py", "serve", "--port", "{port}", "--no-mqtt", "--no-watch"]
    server = start_server(tmp_path_factory.mktemp("dashboard"), command, REALTIME_PING_INTERVAL_S="5")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless. Playwright's sync API keeps an event loop in this thread, so Django's
    guard against ORM calls from async code is lifted while the browser is open (the ORM calls stay sync)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium is missing: scripts/test installs it (apt-get install chromium)"
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    if before is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture
def operator(transactional_db):
    from devices.groups import ensure_operators_group
    from tests.factories import UserFactory

    user = UserFactory(first_name="Olga")
    user.groups.add(ensure_operators_group())
    return user


@pytest.fixture
def page(browser, dash_server):
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, base_url=dash_server.http)
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    yield tab
    context.close()


def log_in(page, user) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def wait_live(page) -> None:
    """The page's /ws/dashboard/ socket is open (and has joined the group a moment later)."""
    page.wait_for_selector("#live-indicator[data-state=on]")
    page.wait_for_timeout(300)


def screenshot(page, name: str, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


# --- talking to the server as a camera ------------------------------------------------------------


def http(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(server.http + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def post_envelope(server, device, env: dict) -> dict:
    status, body = http(server, "POST", "/api/v1/ingest/", json.dumps(env).encode(),
                        {"Authorization": f"Device {device.issued.key}", "Content-Type": "application/json"})  # fmt: skip
    assert status in (200, 201) and body["status"] == "accepted", body
    return body


def plate_picture(plate: str, size=(360, 90)) -> bytes:
    """A JPEG that looks like a plate crop (yellow plate, black characters)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", size, (40, 44, 52))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle((8, 8, size[0] - 8, size[1] - 8), radius=8, fill=(245, 217, 10), outline=(10, 10, 10), width=4)
    font = ImageFont.load_default(size=int(size[1] * 0.55))
    box = draw.textbbox((0, 0), plate, font=font)
    at = ((size[0] - (box[2] - box[0])) / 2 - box[0], (size[1] - (box[3] - box[1])) / 2 - box[1])
    draw.text(at, plate, fill=(10, 10, 10), font=font)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def upload_picture(server, device, plate: str) -> str:
    boundary = uuid.uuid4().hex
    data = plate_picture(plate)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"crop.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    status, answer = http(server, "POST", "/api/v1/images/", body, {
        "Authorization": f"Device {device.issued.key}", "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 201, answer
    return answer["image_ref"]
