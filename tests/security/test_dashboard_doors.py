"""The dashboard's doors: pages, forms and browser sockets by role, CSRF on every form, and the Django admin.

Browser sockets are tried in-process through the ASGI application (session cookie, Origin header).
"""

from __future__ import annotations

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from detections.alert_models import Alert, Watchlist
from devices.models import Command, Device
from tests.factories import envelope
from transport.pipeline import ingest

from .conftest import doors, make_person, outcomes

WEB = ("anonymous", "plain", "operator")
# path (GET, or POST with a form) | anonymous, plain, operator
PAGES = [
    ("GET", "/", 302, 403, 200),
    ("GET", "/dashboard/devices/", 302, 403, 200),
    ("GET", "/dashboard/devices/{device}/", 302, 403, 200),
    ("GET", "/dashboard/detections/", 302, 403, 200),
    ("GET", "/dashboard/detections/export.csv", 302, 403, 200),
    ("GET", "/dashboard/alerts/", 302, 403, 200),
    ("GET", "/dashboard/analytics/", 302, 403, 200),
    ("POST", "/dashboard/devices/{device}/commands/", 302, 403, 302),
    ("POST", "/dashboard/alerts/{alert}/ack/", 302, 403, 302),
]
FORMS = {
    "/dashboard/devices/{device}/commands/": {"action": "ping", "params": "{}", "ttl_s": "60"},
    "/dashboard/alerts/{alert}/ack/": {"comment": "seen"},
}
# admin path (GET, or POST with the form that goes with it) | anonymous, operator, staff operator, superuser
ADMIN_ROLES = ("anonymous", "operator", "staff_operator", "superuser")
ADMIN = [
    ("GET", "/admin/", 302, 302, 200, 200),
    ("GET", "/admin/devices/device/", 302, 302, 200, 200),
    ("GET", "/admin/devices/device/{device}/change/", 302, 302, 200, 200),
    ("GET", "/admin/devices/device/add/", 302, 302, 403, 200),
    ("POST", "/admin/devices/device/add/", 302, 302, 403, 302),
    ("POST", "/admin/devices/device/{device}/change/", 302, 302, 403, 302),
    ("POST", "/admin/devices/device/#rotate_keys", 302, 302, 302, 302),  # an action not offered: "no action"
    ("POST", "/admin/devices/device/#deactivate", 302, 302, 302, 302),
    ("GET", "/admin/devices/command/", 302, 302, 200, 200),
    ("GET", "/admin/detections/watchlist/", 302, 302, 403, 200),
    ("GET", "/admin/detections/watchlist/add/", 302, 302, 403, 200),
    ("GET", "/admin/detections/webhook/", 302, 302, 403, 200),
    ("GET", "/admin/transport/rejectedmessage/", 302, 302, 403, 200),
    ("GET", "/admin/auth/user/", 302, 302, 403, 200),
    ("GET", "/admin/lpr_server/operatortoken/", 302, 302, 403, 200),
    ("GET", "/admin/authtoken/tokenproxy/", 302, 302, 404, 404),  # DRF's clear-text tokens: gone
]


@pytest.fixture
def scene(device):
    ingest(envelope(device.id), device, "rest")
    from detections.models import Detection

    detection = Detection.objects.get(device=device)
    watchlist = Watchlist.objects.create(name="stolen")
    alert = Alert.objects.create(watchlist=watchlist, detection=detection, device=device, plate="AB123CD",
                                 matched="AB123CD", captured_at=detection.captured_at)  # fmt: skip
    return {"device": device.id, "alert": alert.id}


def state() -> tuple:
    return (
        Command.objects.count(), list(Alert.objects.values_list("acknowledged_at", flat=True)),
        list(Device.objects.values_list("id", "name", "active", "key_hash")),
    )  # fmt: skip


def signed_in(role: str, **client_options) -> Client:
    client = Client(**client_options)
    user = make_person(role)
    if user is not None:
        client.force_login(user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("method, path, expected", doors(PAGES, WEB))
def test_dashboard_door(scene, method, path, expected):
    def attempt(role: str) -> int:
        before, url = state(), path.format(**scene)
        response = signed_in(role).post(url, FORMS[path]) if method == "POST" else signed_in(role).get(url)
        if role == "anonymous":
            assert response["Location"].startswith("/accounts/login/?next=")
        if role != "operator":
            assert state() == before, f"{role}: refused, yet something changed"
        elif method == "POST":
            assert state() != before, "the operator's form did nothing"
        return response.status_code

    assert outcomes(expected, attempt) == expected


def _admin_form(path: str, device: Device) -> dict:
    if path.endswith("#rotate_keys") or path.endswith("#deactivate"):
        return {"action": path.split("#")[1], "_selected_action": [device.id], "index": "0"}
    form = {"name": "Renamed", "site": "south", "location": "", "active": "on", "profile": "urban",
            "desired_config_version": "0", "desired_config": "{}"}  # fmt: skip
    if path.endswith("/add/"):
        return {**form, "id": "NEWCAM1"}
    for prefix in ("commands", "presence_changes", "protocol_switches"):  # the change page's inline formsets
        form.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0", f"{prefix}-MIN_NUM_FORMS": "0",
                     f"{prefix}-MAX_NUM_FORMS": "0"})  # fmt: skip
    return form


@pytest.mark.django_db
@pytest.mark.parametrize("method, path, expected", doors(ADMIN, ADMIN_ROLES))
def test_admin_door(device, method, path, expected):
    """Only a superuser (or staff given the device permissions) changes devices; the operators' view is read-only."""

    def attempt(role: str) -> int:
        before, client = state(), signed_in(role)
        url = path.split("#")[0].format(device=device.id)
        response = client.post(url, _admin_form(path, device)) if method == "POST" else client.get(url)
        if method == "POST":
            assert (state() != before) == (role == "superuser"), f"{role}: {path} changed={state() != before}"
        return response.status_code

    assert outcomes(expected, attempt) == expected


@pytest.mark.django_db
@pytest.mark.parametrize("path", list(FORMS))
def test_dashboard_forms_refuse_a_post_without_the_csrf_token(scene, path):
    client = signed_in("operator", enforce_csrf_checks=True)
    url = path.format(**scene)
    before = state()

    assert client.post(url, FORMS[path]).status_code == 403
    assert state() == before

    client.get("/")  # the pages set the CSRF cookie their forms echo back
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    assert client.post(url, {**FORMS[path], "csrfmiddlewaretoken": token}).status_code == 302
    assert state() != before


@pytest.mark.django_db
def test_login_and_logout_refuse_a_post_without_the_csrf_token():
    user = make_person("operator")
    user.set_password("pass-for-csrf-1")
    user.save()
    client = Client(enforce_csrf_checks=True)
    assert client.post("/accounts/login/", {"username": user.username, "password": "pass-for-csrf-1"}).status_code == 403
    assert "_auth_user_id" not in client.session
    client.force_login(user)
    assert client.post("/accounts/logout/").status_code == 403
    assert client.get("/").status_code == 200  # still signed in


@pytest.mark.django_db
def test_the_operator_api_refuses_a_session_post_without_the_csrf_token(device):
    client = signed_in("operator", enforce_csrf_checks=True)
    url = f"/api/v1/devices/{device.id}/commands/"

    refused = client.post(url, {"action": "ping"}, content_type="application/json")
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    assert "CSRF" in refused.json()["detail"]
    assert not Command.objects.exists()

    client.get("/")
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    accepted = client.post(url, {"action": "ping"}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201


# --- browser sockets --------------------------------------------------------------------------------------

SOCKETS = [
    # path | anonymous, plain, operator, operator from a foreign page (Origin)
    ("/ws/dashboard/", 4401, 4403, "open", "refused"),
    ("/ws/video/{device}/", 4401, 4403, "open", "refused"),
]


async def _socket_outcome(path: str, cookie: str, origin: str):
    from lpr_server.asgi import application

    headers = [(b"origin", origin.encode()), (b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    if not connected:
        return "refused"
    if await communicator.receive_nothing(timeout=0.5):
        await communicator.disconnect()
        return "open"
    output = await communicator.receive_output()
    return output["code"] if output["type"] == "websocket.close" else output


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path, expected", doors(SOCKETS, ("anonymous", "plain", "operator", "foreign_origin")))
def test_browser_socket_door(device, path, expected):
    got = {}
    for role in expected:
        user = make_person("operator" if role == "foreign_origin" else role)
        cookie = ""
        if user is not None:
            client = Client()
            client.force_login(user)
            cookie = f"sessionid={client.cookies['sessionid'].value}"
        origin = "https://evil.example" if role == "foreign_origin" else "http://127.0.0.1"
        got[role] = asyncio.run(_socket_outcome(path.format(device=device.id), cookie, origin))
    assert got == expected
