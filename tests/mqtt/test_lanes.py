"""The bridge's storage lanes: every message of a device goes to the same lane, and devices spread over the lanes.

(End to end, the bridge tests run `run_mqtt_bridge` with its default of two lanes.)"""

from collections import defaultdict

from transport.mqtt.bridge import Bridge, Limits
from transport.mqtt.client import BrokerAddress, Received


def received(topic: str) -> Received:
    return Received(topic, b"{}", mid=1, qos=1, retain=False, generation=0)


def lanes_of(bridge: Bridge) -> dict[str, set[int]]:
    seen = defaultdict(set)
    for lane in bridge.lanes:
        while not lane.inbox.empty():
            seen[lane.inbox.get().topic].add(lane.number)
    return seen


def test_a_device_s_messages_share_one_lane_and_devices_use_every_lane():
    bridge = Bridge(BrokerAddress.from_url("mqtt://127.0.0.1:1"), "lanes-test", limits=Limits(lanes=2))
    devices = [f"CAM{n:03d}" for n in range(40)]
    kinds = ["up/detection", "up/health", "up/config", "status"]
    for _ in range(3):
        for device in devices:
            for kind in kinds:
                bridge._route(received(f"lpr/v1/devices/{device}/{kind}"))
    bridge._route(received("not/a/device-topic"))
    assert bridge.backlog() == 3 * len(devices) * len(kinds) + 1

    seen = lanes_of(bridge)
    lane_of_device = {}
    for device in devices:
        lanes = set().union(*(seen[f"lpr/v1/devices/{device}/{kind}"] for kind in kinds))
        assert len(lanes) == 1, f"{device} went to lanes {lanes}"
        lane_of_device[device] = lanes.pop()
    assert set(lane_of_device.values()) == {0, 1}
    assert seen["not/a/device-topic"] == {0}  # refused there, with the reason
    assert bridge.backlog() == 0


def test_one_lane_takes_everything():
    bridge = Bridge(BrokerAddress.from_url("mqtt://127.0.0.1:1"), "lanes-test", limits=Limits(lanes=1))
    for n in range(10):
        bridge._route(received(f"lpr/v1/devices/CAM{n}/up/detection"))
    assert [lane.inbox.qsize() for lane in bridge.lanes] == [10]
