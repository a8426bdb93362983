"""EdgeClient on each fixed transport against the real server: messages stored once, a `ping` command answered."""

from __future__ import annotations

import asyncio
import time

import pytest

from edge import EdgeClient
from tests.realtime.conftest import in_thread, start_server

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def server(tmp_path_factory, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        server = start_server(tmp_path_factory.mktemp("server"), DB_CONN_MAX_AGE="0")
    yield server
    server.stop()


async def eventually(check, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := await in_thread(check)):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
    return value


@pytest.mark.parametrize("protocol", ["websocket", "socketio", "rest"])
def test_messages_are_stored_once_and_a_ping_is_answered(server, make_device, tmp_path, protocol):
    from devices import commands
    from devices.models import Command
    from transport.models import Message

    device = make_device()

    async def camera() -> None:
        client = EdgeClient(server.http, device.id, device.issued.key, protocol=protocol,
                            outbox_path=str(tmp_path / "outbox.sqlite"))  # fmt: skip
        await client.start()
        try:
            sent = [await client.send_detection(f"AB{i:03d}CD", 0.9) for i in range(5)]
            sent.append(await client.send_health(cpu_percent=12.5))
            assert await client.flush(20), f"not every message was acked over {protocol}"
            stored = await in_thread(
                lambda: dict(Message.objects.filter(device_id=device.id).values_list("message_id", "received_via"))
            )  # fmt: skip
            assert {str(m) for m in stored} >= set(sent)
            assert {stored[m] for m in stored if str(m) in sent} == {protocol}
            command = await in_thread(lambda: commands.send(device.id, "ping"))
            state = lambda: Command.objects.get(pk=command.pk).state == Command.State.DONE  # noqa: E731
            await eventually(state, 30, f"the ping to be answered over {protocol}")
        finally:
            await client.stop()

    asyncio.run(camera())
