"""A TCP proxy that tests steer to break the network between camera and server.

In process::

    proxy = FaultProxy("127.0.0.1", server_port)
    await proxy.start()              # proxy.port is the port to connect to
    proxy.set_latency(200)           # ms added to every chunk, each direction
    proxy.drop_new(True)             # new connections are closed at once
    proxy.cut()                      # abort every open connection
    proxy.blackhole(True)            # accept and read, never forward (requests time out);
                                     # open connections stall until restore()
    proxy.restore()                  # no latency, no drops, no black hole
    await proxy.stop()

As a process: ``python -m edge.faultproxy --target HOST:PORT [--listen HOST:PORT]
[--control HOST:PORT]`` prints ``{"listen": port, "control": port}`` on its
first stdout line, then takes ``POST /latency?ms=N``, ``/drop?on=1``, ``/cut``,
``/blackhole?on=1``, ``/restore`` and ``GET /state`` on the control port.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from aiohttp import web


class FaultProxy:
    def __init__(self, target_host: str, target_port: int,
                 listen_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.listen = (listen_host, listen_port)
        self.latency_s = 0.0
        self.dropping = False
        self.blackholed = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections_seen = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, *self.listen)
        self.port = self._server.sockets[0].getsockname()[1]

    def set_latency(self, ms: float) -> None:
        self.latency_s = max(0.0, ms) / 1000

    def drop_new(self, on: bool = True) -> None:
        self.dropping = on

    def blackhole(self, on: bool = True) -> None:
        self.blackholed = on

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.latency_s, self.dropping, self.blackholed = 0.0, False, False

    def state(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_s * 1000, "drop_new": self.dropping,
                "blackhole": self.blackholed, "open": len(self._writers) // 2,
                "seen": self.connections_seen, "port": self.port}

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_seen += 1
        if self.dropping:
            writer.transport.abort()
            return
        self._writers.add(writer)
        if self.blackholed:
            await self._swallow(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._writers.discard(writer)
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        pipes = [self._spawn(self._pipe(reader, up_writer)),
                 self._spawn(self._pipe(up_reader, writer))]
        await asyncio.gather(*pipes, return_exceptions=True)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                pass
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    def _spawn(self, coro: Any) -> "asyncio.Task[None]":
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction; the delay is per chunk, ordered through a queue."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = self._spawn(self._deliver(queue, writer))
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await queue.put((time.monotonic() + self.latency_s, data))
        except (ConnectionError, OSError):
            pass
        await queue.put((0.0, b""))
        await asyncio.gather(sender, return_exceptions=True)

    async def _deliver(self, queue: "asyncio.Queue[tuple[float, bytes]]",
                       writer: asyncio.StreamWriter) -> None:
        while True:
            due, data = await queue.get()
            if not data:
                if writer.can_write_eof():
                    try:
                        writer.write_eof()
                    except OSError:
                        pass
                return
            while self.blackholed:  # stall open connections, like a dead link; restore resumes
                await asyncio.sleep(0.05)
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()


def control_app(proxy: FaultProxy) -> web.Application:
    def flag(request: web.Request) -> bool:
        return request.query.get("on", "1") not in ("0", "false", "no")

    async def act(request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action == "latency":
            proxy.set_latency(float(request.query.get("ms", "0")))
        elif action == "drop":
            proxy.drop_new(flag(request))
        elif action == "blackhole":
            proxy.blackhole(flag(request))
        elif action == "cut":
            proxy.cut()
        elif action == "restore":
            proxy.restore()
        else:
            raise web.HTTPNotFound()
        return web.json_response(proxy.state())

    async def state(_: web.Request) -> web.Response:
        return web.json_response(proxy.state())

    app = web.Application()
    app.router.add_post("/{action}", act)
    app.router.add_get("/state", state)
    return app


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _serve(args: argparse.Namespace) -> None:
    proxy = FaultProxy(*_hostport(args.target), *_hostport(args.listen))
    await proxy.start()
    runner = web.AppRunner(control_app(proxy))
    await runner.setup()
    site = web.TCPSite(runner, *_hostport(args.control))
    await site.start()
    control_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"listen": proxy.port, "control": control_port}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await proxy.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edge.faultproxy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--control", default="127.0.0.1:0")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
