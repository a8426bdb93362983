"""The MQTT adapter against the real Mosquitto on 127.0.0.1:1883."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.envelope import build_envelope
from edge.transports import DeviceIdentity, TransportError
from edge.transports.mqtt import MqttTransport
from tests.edge.edge_fakeserver import FakeMqttBridge, FakeServer
from tests.edge.edge_helpers import eventually, run

ROOT = Path(__file__).resolve().parents[2]
BROKER = "mqtt://127.0.0.1:1883"


class Watcher:
    """Records what arrives on a topic filter, e.g. a device's retained status."""

    def __init__(self, topic: str) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, m.payload.decode(), m.retain))
        self.client.connect("127.0.0.1", 1883)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def last(self) -> str | None:
        return self.messages[-1][1] if self.messages else None

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def envelope(device_id: str, data_type: str = "detection") -> dict:
    return build_envelope(device_id=device_id, data_type=data_type, protocol="mqtt",
                          payload={"plate": "AB123CD", "confidence": 0.9})


def test_publishes_on_up_topics_and_gets_acks_from_down_ack(device_id: str) -> None:
    async def body() -> None:
        server = FakeServer(keys={device_id: "k"})
        bridge = await FakeMqttBridge(server, [device_id]).start()
        status = Watcher(f"lpr/v1/devices/{device_id}/status")
        mq = MqttTransport(DeviceIdentity("http://unused", device_id, "k", BROKER))
        await mq.connect()
        await eventually(lambda: status.last() == "online")
        batch = [envelope(device_id), envelope(device_id, "health")]
        acks = await mq.send(batch)
        assert [(a["message_id"], a["status"]) for a in acks] == [
            (batch[0]["message_id"], "accepted"), (batch[1]["message_id"], "accepted")]
        assert bridge.topics == [f"lpr/v1/devices/{device_id}/up/detection",
                                 f"lpr/v1/devices/{device_id}/up/health"]
        assert server.stored[batch[0]["message_id"]] == batch[0]
        assert [a["status"] for a in await mq.send(batch[:1])] == ["duplicate"]
        await mq.close()
        await eventually(lambda: status.last() == "offline")
        status.stop()
        bridge.clear_retained(device_id)
        await bridge.stop()
    run(body())


def test_retained_config_and_commands_arrive_as_pushes(device_id: str) -> None:
    async def body() -> None:
        bridge = await FakeMqttBridge(FakeServer(), [device_id]).start()
        root = f"lpr/v1/devices/{device_id}"
        bridge.publish(f"{root}/down/config", {"version": 4, "values": {"fps": 12}}, retain=True)
        pushes: list = []
        mq = MqttTransport(DeviceIdentity("http://unused", device_id, "k", BROKER), pushes.append)
        await mq.connect()
        await eventually(lambda: pushes)
        assert pushes[0] == {"type": "config", "version": 4, "values": {"fps": 12}}
        bridge.publish(f"{root}/down/command", {"id": 7, "action": "ping", "params": {}})
        await eventually(lambda: len(pushes) == 2)
        assert pushes[1] == {"type": "command", "command": {"id": 7, "action": "ping",
                                                            "params": {}}}
        await mq.close()
        bridge.clear_retained(device_id)
        await bridge.stop()
    run(body())


def test_missing_ack_times_out_with_partial_acks(device_id: str) -> None:
    async def body() -> None:
        bridge = await FakeMqttBridge(FakeServer(), [device_id]).start()
        mq = MqttTransport(DeviceIdentity("http://unused", device_id, "k", BROKER),
                           ack_timeout_s=0.5)
        await mq.connect()
        first = envelope(device_id)
        assert (await mq.send([first]))[0]["status"] == "accepted"
        bridge.silent = True
        with pytest.raises(TransportError) as err:
            await mq.send([envelope(device_id)])
        assert err.value.kind == "timeout" and err.value.acks == []
        await mq.close()
        bridge.clear_retained(device_id)
        await bridge.stop()
    run(body())


def test_unreachable_broker_fails_fast(device_id: str) -> None:
    async def body() -> None:
        mq = MqttTransport(DeviceIdentity("http://unused", device_id, "k", "mqtt://127.0.0.1:9"))
        with pytest.raises(TransportError) as err:
            await mq.connect()
        assert err.value.kind == "connect_failed"
    run(body(), timeout=5)


HOLDER = textwrap.dedent("""
    import asyncio, sys
    from edge.transports import DeviceIdentity
    from edge.transports.mqtt import MqttTransport
    async def main():
        mq = MqttTransport(DeviceIdentity("http://unused", sys.argv[1], "k", sys.argv[2]),
                           keepalive_s=5)
        await mq.connect()
        print("connected", flush=True)
        await asyncio.sleep(60)
    asyncio.run(main())
""")


def test_last_will_says_offline_when_the_camera_dies(device_id: str) -> None:
    status = Watcher(f"lpr/v1/devices/{device_id}/status")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, device_id, BROKER], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"

        async def wait_for(value: str) -> None:
            await eventually(lambda: status.last() == value, timeout=8)
        run(wait_for("online"))
        proc.kill()  # SIGKILL: no clean disconnect, so the broker sends the will
        run(wait_for("offline"))
    finally:
        proc.kill()
        proc.wait()
        cleanup = mqtt.Client(CallbackAPIVersion.VERSION2)
        cleanup.connect("127.0.0.1", 1883)
        cleanup.loop_start()
        cleanup.publish(f"lpr/v1/devices/{device_id}/status", b"", qos=1,
                        retain=True).wait_for_publish(5)
        cleanup.disconnect()
        cleanup.loop_stop()
        status.stop()
