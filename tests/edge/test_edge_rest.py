from __future__ import annotations

import asyncio
import json

import pytest

from edge.envelope import build_envelope
from edge.faultproxy import FaultProxy
from edge.transports import DeviceIdentity, TransportError
from edge.transports.rest import RestTransport
from tests.edge.edge_fakeserver import FakeServer
from tests.edge.edge_helpers import eventually, run


def env(device: str = "CAM1", **payload: object) -> dict:
    return build_envelope(device_id=device, data_type="detection", protocol="rest",
                          payload=payload or {"plate": "AB123CD", "confidence": 0.9})


async def started(poll: bool = False, **kw: object) -> tuple[FakeServer, RestTransport, list]:
    server = await FakeServer(**kw).start()
    pushes: list = []
    rest = RestTransport(DeviceIdentity(server.url, "CAM1", "key-1"), pushes.append,
                         poll=poll, poll_wait_s=1, timeout_s=1.0)
    return server, rest, pushes


def test_single_envelope_posts_to_ingest_with_device_auth() -> None:
    async def body() -> None:
        server, rest, _ = await started()
        await rest.connect()
        e = env()
        assert await rest.send([e]) == [{"message_id": e["message_id"], "status": "accepted"}]
        assert await rest.send([e]) == [{"message_id": e["message_id"], "status": "duplicate"}]
        post = [r for r in server.requests if r["path"] == "/api/v1/ingest/"][0]
        assert post["method"] == "POST"
        assert post["headers"]["Authorization"] == "Device key-1"
        assert post["headers"]["Content-Type"].startswith("application/json")
        assert json.loads(post["body"]) == e
        await rest.close()
        await server.stop()
    run(body())


def test_many_envelopes_go_as_one_batch_with_per_item_results() -> None:
    async def body() -> None:
        server, rest, _ = await started()
        await rest.connect()
        good = [env(plate=f"P{i}", confidence=0.9) for i in range(3)]
        spoof = env(device="OTHER")
        acks = await rest.send(good + [spoof])
        batch = [r for r in server.requests if r["path"] == "/api/v1/ingest/batch/"]
        assert len(batch) == 1 and json.loads(batch[0]["body"]) == {"messages": good + [spoof]}
        assert [a["status"] for a in acks] == ["accepted"] * 3 + ["rejected"]
        assert acks[3]["error"] == "forbidden"
        await rest.close()
        await server.stop()
    run(body())


@pytest.mark.parametrize("mode,status", [("throttle", "throttled"), ("unavailable", "unavailable")])
def test_429_and_503_become_retry_acks_with_retry_after(mode: str, status: str) -> None:
    async def body() -> None:
        server, rest, _ = await started(retry_after=7)
        await rest.connect()
        server.mode = mode
        one, two = env(), env()
        assert await rest.send([one]) == [
            {"message_id": one["message_id"], "status": status, "retry_after": 7.0}]
        acks = await rest.send([one, two])
        assert [(a["status"], a["retry_after"]) for a in acks] == [(status, 7.0)] * 2
        await rest.close()
        await server.stop()
    run(body())


def test_server_error_raises_for_a_switch() -> None:
    async def body() -> None:
        server, rest, _ = await started()
        await rest.connect()
        server.mode = "error"
        with pytest.raises(TransportError) as err:
            await rest.send([env()])
        assert err.value.kind == "server_error"
        await rest.close()
        await server.stop()
    run(body())


def test_forbidden_single_envelope_is_rejected_with_the_error_code() -> None:
    async def body() -> None:
        server, rest, _ = await started()
        await rest.connect()
        spoof = env(device="OTHER")
        assert await rest.send([spoof]) == [{"message_id": spoof["message_id"],
                                             "status": "rejected", "error": "forbidden",
                                             "detail": "no"}]
        await rest.close()
        await server.stop()
    run(body())


def test_bad_key_raises_auth() -> None:
    async def body() -> None:
        server = await FakeServer().start()
        rest = RestTransport(DeviceIdentity(server.url, "CAM1", "wrong"), poll=False)
        with pytest.raises(TransportError) as err:
            await rest.connect()
        assert err.value.kind == "auth"
        await rest.close()
        await server.stop()
    run(body())


def test_blackholed_server_times_out() -> None:
    async def body() -> None:
        server, _, _ = await started()
        proxy = FaultProxy("127.0.0.1", server.port)
        await proxy.start()
        rest = RestTransport(DeviceIdentity(f"http://127.0.0.1:{proxy.port}", "CAM1", "key-1"),
                             poll=False, timeout_s=0.5)
        await rest.connect()
        proxy.blackhole(True)
        with pytest.raises(TransportError) as err:
            await rest.send([env()])
        assert err.value.kind == "timeout"
        await rest.close()
        await proxy.stop()
        await server.stop()
    run(body())


def test_connect_pulls_recommendation_and_config_then_long_polls_commands() -> None:
    async def body() -> None:
        server, rest, pushes = await started(
            poll=True, desired_config={"version": 3, "values": {"fps": 10}},
            recommended={"recommended": "rest", "score": 0.6, "factors": {"latency": 0.5}})
        await rest.connect()
        assert pushes[:2] == [
            {"type": "protocol", "recommended": "rest", "score": 0.6, "factors": {"latency": 0.5}},
            {"type": "config", "version": 3, "values": {"fps": 10}},
        ]
        await asyncio.sleep(0.2)
        server.add_command({"id": 41, "action": "ping", "params": {}})
        await eventually(lambda: any(p["type"] == "command" for p in pushes))
        assert pushes[-1] == {"type": "command", "command": {"id": 41, "action": "ping",
                                                             "params": {}}}
        polls = [r for r in server.requests if r["path"] == "/api/v1/device/commands/"]
        assert polls[0]["query"] == {"wait": "1"} and polls[0]["method"] == "GET"
        await rest.ack_command(41, {"command_id": 41, "status": "done"})
        assert server.command_acks == [{"id": "41", "command_id": 41, "status": "done"}]
        await rest.close()
        await server.stop()
    run(body())


def test_token_endpoint_gives_a_cached_jwt() -> None:
    async def body() -> None:
        server, rest, _ = await started()
        token = await rest.api.token()
        assert token == await rest.api.token()  # cached
        assert await rest.api.token(refresh=True) != token
        posts = [r for r in server.requests if r["path"] == "/api/v1/device/token/"]
        assert len(posts) == 2 and posts[0]["method"] == "POST"
        await rest.close()
        await server.stop()
    run(body())


def test_signed_requests_carry_timestamp_and_hmac_of_the_raw_body() -> None:
    import hashlib
    import hmac

    from edge.transports.http import DeviceApi

    async def body() -> None:
        server = await FakeServer().start()
        api = DeviceApi(DeviceIdentity(server.url, "CAM1", "key-1"), sign=True)
        rest = RestTransport(api.device, api=api, poll=False)
        e = env()
        await rest.send([e])
        req = [r for r in server.requests if r["path"] == "/api/v1/ingest/"][0]
        ts = req["headers"]["X-Timestamp"]
        expected = hmac.new(b"key-1", ts.encode() + b"." + req["body"], hashlib.sha256)
        assert req["headers"]["X-Signature"] == "sha256=" + expected.hexdigest()
        assert json.loads(req["body"]) == e
        await api.close()
        await server.stop()
    run(body())
