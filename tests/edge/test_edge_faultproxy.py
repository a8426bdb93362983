from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from edge.faultproxy import FaultProxy
from tests.edge.edge_helpers import run

ROOT = Path(__file__).resolve().parents[2]


async def echo_server() -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()
    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def round_trip(port: int, data: bytes = b"hello", timeout: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(data)), timeout)
    finally:
        writer.close()


async def with_proxy(test) -> None:  # type: ignore[no-untyped-def]
    server = await echo_server()
    proxy = FaultProxy("127.0.0.1", server.sockets[0].getsockname()[1])
    await proxy.start()
    try:
        await test(proxy)
    finally:
        await proxy.stop()
        server.close()


def test_forwards_transparently() -> None:
    async def body(proxy: FaultProxy) -> None:
        assert await round_trip(proxy.port, b"x" * 100_000) == b"x" * 100_000
    run(with_proxy(body))


def test_adds_latency_each_way_and_restore_removes_it() -> None:
    async def body(proxy: FaultProxy) -> None:
        started = time.monotonic()
        await round_trip(proxy.port)
        baseline = time.monotonic() - started
        proxy.set_latency(150)
        started = time.monotonic()
        assert await round_trip(proxy.port) == b"hello"
        assert time.monotonic() - started >= 0.3  # 150 ms out + 150 ms back
        proxy.restore()
        started = time.monotonic()
        await round_trip(proxy.port)
        assert time.monotonic() - started < baseline + 0.1
    run(with_proxy(body))


def test_cut_aborts_open_connections() -> None:
    async def body(proxy: FaultProxy) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        proxy.cut()
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            data = await asyncio.wait_for(reader.read(10), 2)
            if not data:
                raise ConnectionResetError("closed")
        writer.close()
        assert await round_trip(proxy.port) == b"hello"  # new connections still work
    run(with_proxy(body))


def test_drop_new_refuses_new_connections_until_restored() -> None:
    async def body(proxy: FaultProxy) -> None:
        proxy.drop_new(True)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await round_trip(proxy.port)
        proxy.restore()
        assert await round_trip(proxy.port) == b"hello"
    run(with_proxy(body))


def test_blackhole_accepts_but_never_answers_and_restore_resumes() -> None:
    async def body(proxy: FaultProxy) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        proxy.blackhole(True)
        with pytest.raises(asyncio.TimeoutError):
            await round_trip(proxy.port, timeout=0.5)  # connect works, no answer
        writer.write(b"held")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.5)  # open ones stall
        proxy.restore()
        assert await asyncio.wait_for(reader.readexactly(4), 2) == b"held"
        assert await round_trip(proxy.port) == b"hello"
        writer.close()
    run(with_proxy(body))


def test_blackhole_makes_http_requests_time_out() -> None:
    async def body(proxy: FaultProxy) -> None:
        proxy.blackhole(True)
        async with aiohttp.ClientSession() as http:
            with pytest.raises(asyncio.TimeoutError):
                await http.get(f"http://127.0.0.1:{proxy.port}/",
                               timeout=aiohttp.ClientTimeout(total=0.5))
    run(with_proxy(body))


def test_subprocess_with_control_api() -> None:
    async def body() -> None:
        server = await echo_server()
        target = server.sockets[0].getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.faultproxy", "--target", f"127.0.0.1:{target}",
            cwd=ROOT, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            ports = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
            control = f"http://127.0.0.1:{ports['control']}"
            assert await round_trip(ports["listen"]) == b"hello"
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{control}/latency?ms=200") as resp:
                    assert (await resp.json())["latency_ms"] == 200
                started = time.monotonic()
                await round_trip(ports["listen"])
                assert time.monotonic() - started >= 0.4
                await http.post(f"{control}/drop")
                with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                    await round_trip(ports["listen"])
                await http.post(f"{control}/restore")
                async with http.get(f"{control}/state") as resp:
                    state = await resp.json()
                assert state["latency_ms"] == 0 and not state["drop_new"]
            assert await round_trip(ports["listen"]) == b"hello"
        finally:
            proc.kill()
            await proc.wait()
            server.close()
    run(body())
