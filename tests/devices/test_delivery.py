"""Commands reach the camera over its best live channel, with every state move recorded in order."""

import asyncio
import queue
import threading
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from conftest import CameraClient
from devices import channels, commands, watch
from devices.models import Command
from tests.devices.conftest import transitions, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _state(command: Command) -> str:
    command.refresh_from_db()
    return command.state


def test_command_goes_over_the_websocket_when_the_camera_holds_one(make_device, ws_cameras):
    device = make_device()
    cam = ws_cameras(device)
    command = commands.send(device.id, "capture", {"resolution": "full"})
    pushed = cam.wait_frame("command")["command"]
    assert (pushed["id"], pushed["action"], pushed["params"]) == (str(command.id), "capture", {"resolution": "full"})
    assert cam.answer(str(command.id), "received")["status"] == "accepted"
    assert cam.answer(str(command.id), "done")["status"] == "accepted"
    wait_until(lambda: _state(command) == "done", what="done")
    assert transitions(command) == [("queued", ""), ("sent", "websocket"), ("received", "websocket"), ("done", "websocket")]


def test_command_goes_over_mqtt_when_only_that_is_connected(make_device, mqtt_cameras, downlink_to):
    device = make_device()
    cam = mqtt_cameras(device).online()
    wait_until(lambda: device.__class__.objects.get(pk=device.pk).mqtt_status == "online", what="MQTT status")
    command = commands.send(device.id, "reboot")
    pushed = wait_until(lambda: cam.received("command"), what="the command on down/command")[0]
    assert pushed["id"] == str(command.id)
    assert cam.answer(str(command.id), "received")["status"] == "accepted"
    assert cam.answer(str(command.id), "failed")["status"] == "accepted"
    wait_until(lambda: _state(command) == "failed", what="failed")
    assert transitions(command) == [("queued", ""), ("sent", "mqtt"), ("received", "mqtt"), ("failed", "mqtt")]


def test_command_waits_for_the_rest_poll_when_nothing_is_connected(make_device, downlink_to):
    device = make_device()
    command = commands.send(device.id, "ping")
    assert _state(command) == "queued"  # not marked sent to a camera nobody can reach
    rest = CameraClient(device)
    polled = rest.get("/api/v1/device/commands/", wait=0).json()["commands"]
    assert [c["id"] for c in polled] == [str(command.id)]
    for status in ("received", "done"):
        rest.post(f"/api/v1/device/commands/{command.id}/ack/", {"command_id": str(command.id), "status": status})
    assert transitions(command) == [("queued", ""), ("sent", "rest"), ("received", "rest"), ("done", "rest")]


def test_a_failing_channel_falls_through_to_the_next(make_device, ws_cameras, mqtt_cameras, downlink_to):
    device = make_device()
    mqtt_cam = mqtt_cameras(device).online()
    ws_cameras(device)
    wait_until(lambda: device.__class__.objects.get(pk=device.pk).mqtt_status == "online", what="MQTT status")
    live_push, kinds = channels._pushers["live"]
    channels.register("live", lambda *args: False, tuple(kinds))  # the socket's server is gone mid-push
    try:
        command = commands.send(device.id, "capture")
        wait_until(lambda: mqtt_cam.received("command"), what="the command over MQTT instead")
    finally:
        channels.register("live", live_push, tuple(kinds))
    assert transitions(command) == [("queued", ""), ("sent", "mqtt")]


def test_command_issued_while_offline_goes_out_when_the_camera_connects(make_device, ws_cameras, downlink_to):
    device = make_device()
    command = commands.send(device.id, "capture")
    cursor = watch.Cursor()
    watch.tick(cursor)
    assert _state(command) == "queued"
    cam = ws_cameras(device)
    watch.tick(cursor)  # what run_device_watch does every second
    assert cam.wait_frame("command")["command"]["id"] == str(command.id)
    assert transitions(command) == [("queued", ""), ("sent", "websocket")]


def test_command_issued_while_offline_goes_out_when_the_camera_returns_on_mqtt(make_device, mqtt_cameras, downlink_to):
    device = make_device()
    command = commands.send(device.id, "capture")
    cam = mqtt_cameras(device).online()
    wait_until(lambda: device.__class__.objects.get(pk=device.pk).mqtt_status == "online", what="MQTT status")
    watch.tick(watch.Cursor())
    assert wait_until(lambda: cam.received("command"))[0]["id"] == str(command.id)
    assert transitions(command) == [("queued", ""), ("sent", "mqtt")]


def test_expired_command_is_never_delivered(make_device, ws_cameras, downlink_to):
    device = make_device()
    command = commands.send(device.id, "reboot", ttl_s=1)
    Command.objects.filter(pk=command.pk).update(expires_at=timezone.now() - timedelta(milliseconds=1))
    cam = ws_cameras(device)
    cursor = watch.Cursor()
    watch.tick(cursor)
    watch.tick(cursor)
    assert commands.deliver(command) is None
    assert CameraClient(device).get("/api/v1/device/commands/", wait=0).json()["commands"] == []
    cam.wait_frame("ping", timeout=5)  # the socket is alive and would have carried it
    assert cam.of_type("command") == []
    assert transitions(command) == [("queued", ""), ("expired", "")]


def test_answer_over_another_transport_than_the_command_went_out_on(make_device, mqtt_cameras, downlink_to):
    device = make_device()
    cam = mqtt_cameras(device).online()
    wait_until(lambda: device.__class__.objects.get(pk=device.pk).mqtt_status == "online", what="MQTT status")
    command = commands.send(device.id, "capture")
    wait_until(lambda: cam.received("command"))
    rest = CameraClient(device)
    done = rest.post(f"/api/v1/device/commands/{command.id}/ack/", {"command_id": str(command.id), "status": "done"})
    assert done.json()["state"] == "done"
    assert cam.answer(str(command.id), "received")["status"] == "accepted"  # late, over MQTT: changes nothing
    assert _state(command) == "done"
    assert transitions(command) == [("queued", ""), ("sent", "mqtt"), ("done", "rest")]


def test_sent_but_unanswered_commands_are_sent_again_after_a_restart(make_device, ws_cameras, settings):
    settings.COMMAND_ACK_TIMEOUT_S = 0.3
    device = make_device()
    command = commands.issue(device, "capture")
    commands.mark_sent([command], "mqtt")  # then the server died, and the camera never got it
    cam = ws_cameras(device)
    time.sleep(0.3)
    watch.tick(watch.Cursor())  # the restarted watcher
    assert cam.wait_frame("command")["command"]["id"] == str(command.id)
    assert transitions(command) == [("queued", ""), ("sent", "mqtt"), ("sent", "websocket")]
    assert [t.detail for t in command.transitions.order_by("at")][-1] == "re-sent"
    assert Command.objects.get(pk=command.pk).attempts == 2


def test_bad_commands_and_answers_are_refused_and_change_nothing(make_device):
    device, other = make_device(), make_device()
    with pytest.raises(commands.CommandError) as unknown:
        commands.send("NO-SUCH-CAMERA", "ping")
    assert unknown.value.code == "not_found"
    with pytest.raises(commands.CommandError):
        commands.issue(device, "switch_protocol", {"protocol": "carrier-pigeon"})
    command = commands.issue(other, "ping")
    with transaction.atomic():
        refused = commands.apply_answers(device.id, [commands.Answer(command.id, "done")], "rest")
    assert refused[command.id].code == "invalid"  # another device's command
    with transaction.atomic():
        refused = commands.apply_answers(other.id, [commands.Answer(command.id, "rebooted")], "rest")
    assert refused[command.id].code == "invalid"  # not a state a camera can report
    assert _state(command) == "queued"
    assert Command.objects.filter(device=device).count() == 0


class SioCamera:
    """python-socketio's asyncio client on a loop of its own, so the test itself stays synchronous."""

    def __init__(self, server, device):
        import socketio

        from transport import auth

        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.events: queue.Queue = queue.Queue()
        self.client = socketio.AsyncClient(reconnection=False)
        for event in ("command", "config", "protocol"):
            self.client.on(event, lambda data, event=event: self.events.put((event, data)), namespace="/device")
        self._run(self.client.connect(server.http, namespaces=["/device"], auth={"token": auth.issue_token(device)[0]},
                                      transports=["websocket"]))  # fmt: skip

    def _run(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, body: dict) -> dict:
        return self._run(self.client.call("envelope", body, namespace="/device", timeout=10))

    def receive(self, timeout: float = 10) -> tuple[str, dict]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self._run(self.client.disconnect())
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def sio_camera(server):
    opened = []

    def connect(device) -> SioCamera:
        opened.append(SioCamera(server, device))
        wait_until(lambda: channels.live_transports(device.id), 10, what="the Socket.IO connection in presence")
        return opened[-1]

    yield connect
    for client in opened:
        client.close()


def test_command_and_configuration_go_over_socketio(make_device, sio_camera, downlink_to):
    from devices import configuration
    from tests.factories import envelope

    device = make_device()
    client = sio_camera(device)
    command = commands.send(device.id, "capture")
    event, body = client.receive(timeout=10)
    assert (event, body["command"]["id"]) == ("command", str(command.id))
    answer = envelope(device.id, "control", {"command_id": str(command.id), "status": "done"}, protocol="socketio")
    assert client.call(answer)["status"] == "accepted"
    assert transitions(command) == [("queued", ""), ("sent", "socketio"), ("done", "socketio")]
    configuration.set_desired(device, {"fps": 4})
    event, body = client.receive(timeout=10)
    assert (event, body["version"], body["values"]) == ("config", 1, {"fps": 4})


def test_the_connect_hook_sends_waiting_commands_and_a_drifted_configuration(make_device, ws_cameras, downlink_to):
    from devices import configuration, online

    device = make_device()
    command = commands.send(device.id, "capture")
    configuration.set_desired(device, {"fps": 6})
    cam = ws_cameras(device)
    assert online.device_connected(device.id) == 1
    assert cam.wait_frame("command")["command"]["id"] == str(command.id)
    assert cam.wait_frame("config")["values"] == {"fps": 6}
    assert transitions(command) == [("queued", ""), ("sent", "websocket")]


def test_the_rest_poll_repeats_an_unanswered_command_only_after_the_ack_timeout(make_device, settings):
    settings.COMMAND_ACK_TIMEOUT_S = 0.5
    device = make_device()
    command = commands.issue(device, "capture")
    rest = CameraClient(device)
    assert [c["id"] for c in rest.get("/api/v1/device/commands/", wait=0).json()["commands"]] == [str(command.id)]
    assert rest.get("/api/v1/device/commands/", wait=0).json()["commands"] == []  # still being worked on
    time.sleep(0.6)
    assert [c["id"] for c in rest.get("/api/v1/device/commands/", wait=0).json()["commands"]] == [str(command.id)]
    assert [t.detail for t in command.transitions.order_by("at", "id")] == ["", "", "re-sent"]
