"""The operator API and the admin for devices: commands, history, health, drift, and who may do what."""

import pytest
from django.test import Client

from devices import configuration
from devices.groups import ensure_operators_group
from devices.models import Command, Device
from tests.factories import UserFactory, envelope
from transport import pipeline

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _private_broker(downlink_to):
    """Config changes are also published retained on MQTT: to our private broker."""


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator():
    user = UserFactory()
    user.groups.add(ensure_operators_group())  # the data migration made it; a transactional test's flush may not have kept it
    return _client(user)


@pytest.fixture
def staff():
    return _client(UserFactory(is_staff=True, is_superuser=True))


def test_an_operator_sends_a_command_and_reads_its_history(operator, device):
    response = operator.post(f"/api/v1/devices/{device.id}/commands/",
                             {"action": "capture", "params": {"lane": 2}, "ttl_s": 120}, content_type="application/json")  # fmt: skip
    assert response.status_code == 201
    body = response.json()
    assert (body["state"], body["action"], body["params"]) == ("queued", "capture", {"lane": 2})
    rest = {"HTTP_AUTHORIZATION": f"Device {device.issued.key}"}
    Client().get("/api/v1/device/commands/", {"wait": 0}, **rest)
    Client().post(f"/api/v1/device/commands/{body['id']}/ack/", {"command_id": body["id"], "status": "done"},
                  content_type="application/json", **rest)  # fmt: skip
    history = operator.get(f"/api/v1/commands/{body['id']}/").json()
    assert history["state"] == "done"
    assert [(h["state"], h["transport"]) for h in history["history"]] == [("queued", ""), ("sent", "rest"), ("done", "rest")]
    listed = operator.get(f"/api/v1/devices/{device.id}/commands/").json()
    assert [c["id"] for c in listed["results"]] == [body["id"]]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"action": "reboot", "params": [1]}, "params"),
        ({"action": "reboot", "ttl_s": 0}, "ttl_s"),
        ({"action": "reboot", "ttl_s": "soon"}, "ttl_s"),
        ({"action": "re boot"}, "action"),
        ({"action": "switch_protocol", "params": {"protocol": "fax"}}, "params"),
    ],
)
def test_bad_command_requests_are_refused_and_nothing_is_queued(operator, device, body, field):
    response = operator.post(f"/api/v1/devices/{device.id}/commands/", body, content_type="application/json")
    assert (response.status_code, response.json()["error"], response.json()["field"]) == (400, "invalid", field)
    assert not Command.objects.exists()


def test_a_command_for_an_unknown_device_is_not_found(operator):
    response = operator.post("/api/v1/devices/NOPE/commands/", {"action": "ping"}, content_type="application/json")
    assert (response.status_code, response.json()["error"]) == (404, "not_found")


def test_users_outside_operators_and_staff_cannot_send_or_configure(device, operator):
    plain = _client(UserFactory())
    assert plain.get(f"/api/v1/devices/{device.id}/").status_code == 403  # not even reading: operators only
    sent = plain.post(f"/api/v1/devices/{device.id}/commands/", {"action": "ping"}, content_type="application/json")
    assert (sent.status_code, sent.json()["error"]) == (403, "forbidden")
    configured = operator.post(f"/api/v1/devices/{device.id}/config/", {"values": {"fps": 1}}, content_type="application/json")
    assert configured.status_code == 403
    assert operator.post("/api/v1/devices/", {"id": "NEW1"}, content_type="application/json").status_code == 405
    assert operator.delete(f"/api/v1/devices/{device.id}/").status_code == 405
    assert Device.objects.filter(pk=device.pk).exists() and not Command.objects.exists()


def test_staff_set_the_desired_configuration_and_the_list_shows_drift(staff, device):
    response = staff.post(f"/api/v1/devices/{device.id}/config/", {"values": {"fps": 9}, "profile": "rural"},
                          content_type="application/json")  # fmt: skip
    assert response.json() == {"version": 1, "values": {"fps": 9}, "profile": "rural",
                                    "protocol_order": ["mqtt", "rest", "local"], "desired_version": 1,
                                    "reported_version": None, "drift": True}  # fmt: skip
    bad = staff.post(f"/api/v1/devices/{device.id}/config/", {"values": "fps=9"}, content_type="application/json")
    assert (bad.status_code, bad.json()["field"]) == (400, "values")
    pipeline.ingest(envelope(device.id, "config", {"version": 1, "values": {"fps": 9}}), device, "mqtt")
    row = staff.get("/api/v1/devices/").json()["results"][0]
    assert row["config_drift"] == {"desired_version": 1, "reported_version": 1, "drift": False}
    assert {"online", "score", "recommended_protocol", "last_transport", "profile"} <= set(row)


def test_health_reports_by_device(operator, make_device):
    a, b = make_device(), make_device()
    for device in (a, a, b):
        pipeline.ingest(envelope(device.id, "health"), device, "rest")
    listed = operator.get("/api/v1/health/", {"device": a.id}).json()
    assert listed["count"] == 2 and {r["device"] for r in listed["results"]} == {a.id}
    assert operator.get("/api/v1/health/", {"device": "NOPE"}).status_code == 404


def test_admin_sends_a_command_to_selected_devices(staff, make_device):
    a, b = make_device(), make_device()
    page = staff.post("/admin/devices/device/", {"action": "send_command", "_selected_action": [a.id, b.id]})
    assert page.status_code == 200 and b"Send a command" in page.content
    staff.post("/admin/devices/device/", {"action": "send_command", "_selected_action": [a.id, b.id], "apply": "1",
                                          "command": "reboot", "params": "{}", "ttl_s": "600"})  # fmt: skip
    assert sorted(Command.objects.values_list("device_id", "action")) == [(a.id, "reboot"), (b.id, "reboot")]


def test_admin_edit_of_the_desired_configuration_bumps_the_version_and_shows_drift(staff, device):
    form = {"name": device.name, "site": device.site, "location": "", "active": "on", "profile": "suburban",
            "desired_config_version": 0, "desired_config": '{"fps": 11}',
            "commands-TOTAL_FORMS": 0, "commands-INITIAL_FORMS": 0, "presence_changes-TOTAL_FORMS": 0,
            "presence_changes-INITIAL_FORMS": 0, "protocol_switches-TOTAL_FORMS": 0,
            "protocol_switches-INITIAL_FORMS": 0}  # fmt: skip
    response = staff.post(f"/admin/devices/device/{device.id}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    device.refresh_from_db()
    assert (device.desired_config_version, device.desired_config, device.profile) == (1, {"fps": 11}, "suburban")
    assert configuration.drift(device).differs
    page = staff.get(f"/admin/devices/device/{device.id}/change/").content.decode()
    assert "drift: desired v1, reported v—" in page
    assert staff.get("/admin/devices/device/").status_code == 200


def test_the_operators_group_may_send_commands_but_not_manage_devices():
    permissions = set(ensure_operators_group().permissions.values_list("codename", flat=True))
    assert {"view_device", "add_command", "view_command"} <= permissions
    assert not permissions & {"add_device", "change_device", "delete_device"}
