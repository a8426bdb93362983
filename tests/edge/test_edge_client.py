"""EdgeClient end to end against the fake server, the fault proxy and the real Mosquitto."""
from __future__ import annotations

from typing import Any

from edge.client import EdgeClient
from edge.envelope import decode_payload
from edge.faultproxy import FaultProxy
from edge.selector import ProtocolSelector
from tests.edge.edge_fakeserver import FakeMqttBridge, FakeServer
from tests.edge.edge_helpers import eventually, run

BROKER = "mqtt://127.0.0.1:1883"
FAST = {"mqtt": {"clean_session": True, "ack_timeout_s": 2.0},
        "rest": {"timeout_s": 1.0, "poll_wait_s": 1},
        "websocket": {"ack_timeout_s": 2.0, "open_timeout_s": 2.0}}


def make_client(url: str, device_id: str, tmp_path: Any, **kw: Any) -> EdgeClient:
    options = {"mqtt_url": BROKER, "outbox_path": str(tmp_path / f"{device_id}.sqlite"),
               "transport_options": FAST, "evaluate_interval_s": 0.1, "probe_interval_s": 0.2}
    options.update(kw)
    return EdgeClient(url, device_id, "key-1", **options)


def payloads(server: FakeServer, data_type: str) -> list[dict[str, Any]]:
    return [decode_payload(e["payload"], e["metadata"]) for e in server.stored.values()
            if e["data_type"] == data_type]


def test_detection_goes_over_websocket_and_leaves_the_outbox(tmp_path, device_id) -> None:
    async def body() -> None:
        server = await FakeServer(keys={device_id: "key-1"}).start()
        client = make_client(server.url, device_id, tmp_path)
        await client.start()
        mid = await client.send_detection("AB123CD", 0.93, region="it", bbox=None)
        await eventually(lambda: mid in server.stored)
        stored = server.stored[mid]
        assert stored["protocol"] == "websocket" and stored["edge_device_id"] == device_id
        assert stored["payload"] == {"plate": "AB123CD", "confidence": 0.93, "region": "it"}
        assert ("ws", mid, "accepted") in server.received
        await eventually(lambda: len(client.outbox) == 0)
        config = payloads(server, "config")
        assert config == [{"version": 0, "values": {}}]  # reported at start
        sequences = sorted(e["sequence"] for e in server.stored.values())
        assert sequences == list(range(1, len(sequences) + 1))
        await client.stop()
        await server.stop()
    run(body())


def test_commands_are_executed_and_answered_received_then_done(tmp_path, device_id) -> None:
    async def body() -> None:
        server = await FakeServer(keys={device_id: "key-1"}).start()
        seen: list = []
        client = make_client(server.url, device_id, tmp_path, on_config=seen.append,
                             on_command=lambda c: {"rebooted": True} if c["action"] == "reboot"
                             else None)
        await client.start()
        await eventually(lambda: server.ws_clients)
        for cmd in ({"id": 1, "action": "ping", "params": {}},
                    {"id": 2, "action": "set_config", "params": {"values": {"fps": 15}}},
                    {"id": 3, "action": "reboot", "params": {}},
                    {"id": 2, "action": "set_config", "params": {"values": {"fps": 99}}},
                    {"id": 4, "action": "set_config", "params": {"version": 9,
                                                                 "values": {"ir": True}}}):
            await server.push_ws({"type": "command", "command": cmd})
        await eventually(lambda: len(payloads(server, "control")) == 8)
        answers = [(c["command_id"], c["status"]) for c in payloads(server, "control")]
        assert answers == [(1, "received"), (1, "done"), (2, "received"), (2, "done"),
                           (3, "received"), (3, "done"), (4, "received"), (4, "done")]
        done = {c["command_id"]: c.get("result") for c in payloads(server, "control")
                if c["status"] == "done"}
        assert done[1]["pong"] is True and done[2] == {"version": 1}
        assert done[3] == {"rebooted": True}
        assert client.config == {"version": 9, "values": {"fps": 15, "ir": True}}
        assert {"version": 1, "values": {"fps": 15}} in payloads(server, "config")
        assert seen[-1] == {"version": 9, "values": {"fps": 15, "ir": True}}
        await client.stop()
        await server.stop()
    run(body())


def test_unknown_command_fails_with_an_error(tmp_path, device_id) -> None:
    async def body() -> None:
        server = await FakeServer(keys={device_id: "key-1"}).start()
        client = make_client(server.url, device_id, tmp_path)
        await client.start()
        await eventually(lambda: server.ws_clients)
        await server.push_ws({"type": "command", "command": {"id": "c9", "action": "dance"}})
        await eventually(lambda: len(payloads(server, "control")) == 2)
        failed = payloads(server, "control")[1]
        assert failed["status"] == "failed" and "dance" in failed["error"]
        await client.stop()
        await server.stop()
    run(body())


def test_switch_protocol_command_moves_to_rest_and_reports_it(tmp_path, device_id) -> None:
    async def body() -> None:
        server = await FakeServer(keys={device_id: "key-1"}).start()
        client = make_client(server.url, device_id, tmp_path)
        await client.start()
        await eventually(lambda: server.ws_clients)
        await server.push_ws({"type": "command", "command": {
            "id": 5, "action": "switch_protocol", "params": {"protocol": "rest"}}})
        await eventually(lambda: any(c["status"] == "done" for c in payloads(server, "control")))
        assert client.transport == "rest"
        done = [c for c in payloads(server, "control") if c["status"] == "done"][0]
        assert done["result"] == {"from": "websocket", "to": "rest"}
        mid = await client.send_detection("XY999", 0.8)
        await eventually(lambda: ("rest", mid, "accepted") in server.received)
        health = [h for h in payloads(server, "health") if "protocol_switches" in h]
        assert health[0]["protocol_switches"][0]["to"] == "rest"
        assert health[0]["protocol_switches"][0]["reason"] == "command 5"
        assert health[0]["transport"] == "rest"
        await client.stop()
        await server.stop()
    run(body())


def test_falls_down_the_ladder_keeps_everything_and_comes_back(tmp_path, device_id) -> None:
    """WebSocket lost -> REST fails -> MQTT; then the link heals and it climbs back."""
    async def body() -> None:
        server = await FakeServer(keys={device_id: "key-1"}).start()
        bridge = await FakeMqttBridge(server, [device_id]).start()
        proxy = FaultProxy("127.0.0.1", server.port)
        await proxy.start()
        selector = ProtocolSelector(up_after=3, min_dwell_s=0.5, offline_retry_s=0.2)
        client = make_client(f"http://127.0.0.1:{proxy.port}", device_id, tmp_path,
                             selector=selector)
        await client.start()
        first = await client.send_detection("AA111AA", 0.9)
        await eventually(lambda: ("ws", first, "accepted") in server.received)
        proxy.drop_new(True)
        proxy.cut()  # websocket lost; REST cannot connect either
        during = [await client.send_detection(f"BB{i:03d}BB", 0.9) for i in range(5)]
        await eventually(lambda: client.transport == "mqtt", timeout=8)
        await eventually(lambda: all(m in server.stored for m in during), timeout=8)
        assert {v for v, m, _ in server.received if m in during} == {"mqtt"}
        hops = [(s.from_, s.to) for s in selector.history]
        assert hops[:2] == [("websocket", "rest"), ("rest", "mqtt")]
        proxy.restore()
        await eventually(lambda: client.transport == "websocket", timeout=10)
        last = await client.send_detection("CC222CC", 0.9)
        await eventually(lambda: ("ws", last, "accepted") in server.received)
        reasons = [s["reason"] for h in payloads(server, "health")
                   for s in h.get("protocol_switches", [])]
        assert reasons[0] == "websocket connection_lost" and reasons[1].startswith("rest ")
        assert any(r.startswith("recovered") for r in reasons)
        stored_ids = [m for _, m, status in server.received if status == "accepted"]
        assert len(stored_ids) == len(set(stored_ids))
        await client.stop()
        await proxy.stop()
        bridge.clear_retained(device_id)
        await bridge.stop()
        await server.stop()
    run(body(), timeout=30)


def test_rest_timeout_switches_to_mqtt(tmp_path, device_id) -> None:
    async def body() -> None:
        server = await FakeServer(keys={device_id: "key-1"}).start()
        bridge = await FakeMqttBridge(server, [device_id]).start()
        proxy = FaultProxy("127.0.0.1", server.port)
        await proxy.start()
        client = make_client(f"http://127.0.0.1:{proxy.port}", device_id, tmp_path,
                             realtime="websocket", probe_interval_s=60)
        client.selector.force("rest", hold_s=60)
        await client.start()
        await eventually(lambda: client.outbox.message_ids() == [])
        proxy.blackhole(True)
        mid = await client.send_detection("TT100", 0.7)
        await eventually(lambda: client.transport == "mqtt", timeout=8)
        assert client.selector.history[-1].reason == "rest timeout"
        await eventually(lambda: ("mqtt", mid, "accepted") in server.received, timeout=8)
        await client.stop()
        await proxy.stop()
        bridge.clear_retained(device_id)
        await bridge.stop()
        await server.stop()
    run(body(), timeout=30)


def test_offline_keeps_messages_on_disk_across_a_restart(tmp_path, device_id) -> None:
    async def body() -> None:
        server = await FakeServer(keys={device_id: "key-1"}).start()
        proxy = FaultProxy("127.0.0.1", server.port)
        await proxy.start()
        proxy.drop_new(True)
        dead = {"mqtt_url": "mqtt://127.0.0.1:9"}
        client = make_client(f"http://127.0.0.1:{proxy.port}", device_id, tmp_path, **dead)
        await client.start()
        ids = [await client.send_detection(f"OF{i}", 0.9) for i in range(3)]
        await eventually(lambda: client.transport == "offline", timeout=8)
        queued = {e["message_id"]: e for e in client.outbox.due(100)}
        assert set(ids) <= set(queued)
        await client.stop()
        proxy.restore()
        again = make_client(f"http://127.0.0.1:{proxy.port}", device_id, tmp_path, **dead)
        await again.start()
        await eventually(lambda: set(queued) <= set(server.stored), timeout=10)
        for mid, env in queued.items():  # the same message, id and sequence, as first built
            assert server.stored[mid] == env
        await again.stop()
        await proxy.stop()
        await server.stop()
    run(body(), timeout=30)


def test_throttled_messages_are_resent_after_retry_after(tmp_path, device_id) -> None:
    async def body() -> None:
        server = await FakeServer(keys={device_id: "key-1"}, retry_after=1).start()
        client = make_client(server.url, device_id, tmp_path)
        await client.start()
        await eventually(lambda: server.ws_clients)
        server.mode = "throttle"
        mid = await client.send_detection("TH1", 0.9)
        await eventually(lambda: client.counters["throttled"] >= 1)
        assert mid not in server.stored and mid in client.outbox.message_ids()
        server.mode = "ok"
        await eventually(lambda: mid in server.stored, timeout=5)
        assert client.transport == "websocket"  # throttling is not a reason to switch
        await client.stop()
        await server.stop()
    run(body())


def test_encrypted_compressed_payloads_decode_with_the_payload_key(tmp_path, device_id) -> None:
    from cryptography.fernet import Fernet

    async def body() -> None:
        key = Fernet.generate_key().decode()
        server = await FakeServer(keys={device_id: "key-1"}).start()
        client = make_client(server.url, device_id, tmp_path, payload_key=key, compression=True)
        await client.start()
        mid = await client.send_detection("EN1", 0.9)
        await eventually(lambda: mid in server.stored)
        env = server.stored[mid]
        assert isinstance(env["payload"], str)
        assert decode_payload(env["payload"], env["metadata"], key)["plate"] == "EN1"
        await client.stop()
        await server.stop()
    run(body())
