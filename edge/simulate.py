"""Many simulated cameras in one asyncio process.

    python -m edge.simulate --server http://127.0.0.1:8000 --cameras 50 --rate 2 \\
        --protocol auto --mqtt mqtt://127.0.0.1:1883 --duration 60 --credentials devices.json

``--credentials`` is a JSON array of ``{"device_id", "key", "payload_key"}``
(or such objects one after another, as ``manage.py create_device --json``
prints them). Without it, devices ``SIM-0001``... with key ``sim-SIM-0001``
are used. Each camera keeps its outbox and a message log in ``--state-dir``:
``<device_id>.messages.jsonl`` has one JSON object per line,
``{"event": "produced", "message_id", "sequence", "data_type", "timestamp"}``,
``{"event": "ack", "message_id", "status"}``, ``{"event": "dropped",
"message_id", "reason"}`` or ``{"event": "switch", "from", "to", "reason"}``.
A progress line goes to stderr about once a second; a JSON summary to stdout
at the end (and to ``summary.json`` in the state directory).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import signal
import sys
import time
from typing import IO, Any

from .client import EdgeClient
from .plates import PlateStream
from .selector import ProtocolSelector

PROTOCOLS = ("auto", "websocket", "socketio", "rest", "mqtt")
# An 8x8 grey JPEG: what the simulated cameras stream when an operator watches.
FRAME_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERX"
    "RTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj"
    "Y2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAAIAAgDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAA"
    "AAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAk"
    "M2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT"
    "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QA"
    "HwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdh"
    "cRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hp"
    "anN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk"
    "5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDMooooA//Z"
)


def load_credentials(path: str | None, cameras: int) -> list[dict[str, Any]]:
    if not path:
        return [{"device_id": f"SIM-{i:04d}", "key": f"sim-SIM-{i:04d}", "payload_key": None}
                for i in range(1, cameras + 1)]
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    creds: list[dict[str, Any]] = []
    decoder, pos = json.JSONDecoder(), 0
    while pos < len(text):  # an array, or objects one after another
        if text[pos].isspace():
            pos += 1
            continue
        value, pos = decoder.raw_decode(text, pos)
        creds.extend(value if isinstance(value, list) else [value])
    if len(creds) < cameras:
        print(f"only {len(creds)} credentials for {cameras} cameras", file=sys.stderr)
    return creds[:cameras]


class MessageLog:
    """Per camera, the ids it produced and what became of them, as JSON lines."""

    def __init__(self, path: str) -> None:
        self._fh: IO[str] = open(path, "a", encoding="utf-8", buffering=1)

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "produced":
            line = {"event": kind, "message_id": data["message_id"],
                    "sequence": data.get("sequence"), "data_type": data["data_type"],
                    "timestamp": data["timestamp"]}
        elif kind == "ack":
            line = {"event": kind, "message_id": data.get("message_id"),
                    "status": data.get("status")}
        elif kind in ("dropped", "switch"):
            line = {"event": kind, **data}
        else:
            return
        self._fh.write(json.dumps(line) + "\n")

    def close(self) -> None:
        self._fh.close()


def selector_for(args: argparse.Namespace) -> ProtocolSelector:
    fixed = None if args.protocol == "auto" else args.protocol
    return ProtocolSelector(
        top=fixed if fixed in ("websocket", "socketio") else args.realtime, fixed=fixed,
        up_after=args.up_after, down_after=args.down_after, min_dwell_s=args.min_dwell,
        offline_retry_s=args.offline_retry, offline_retry_max_s=args.offline_retry_max,
    )


def transport_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    ack = {"ack_timeout_s": args.ack_timeout}
    return {"websocket": {**ack, "url": args.ws_server or args.server}, "socketio": ack,
            "mqtt": ack, "rest": {"timeout_s": args.ack_timeout}}


class Camera:
    def __init__(self, args: argparse.Namespace, cred: dict[str, Any], seed: int) -> None:
        device_id = cred["device_id"]
        self.rng = random.Random(seed)
        self.stream = PlateStream(self.rng)
        self.log = MessageLog(os.path.join(args.state_dir, f"{device_id}.messages.jsonl"))
        self.rate, self.health_interval_s = args.rate, args.health_interval
        self.started = time.monotonic()
        self.client = EdgeClient(
            args.server, device_id, cred["key"],
            cred.get("payload_key") if args.encrypt else None,
            mqtt_url=args.mqtt, protocol=args.protocol, realtime=args.realtime,
            outbox_path=os.path.join(args.state_dir, f"{device_id}.outbox.sqlite"),
            compression=args.compression, on_event=self.log, on_command=self.on_command,
            on_video=self.on_video, evaluate_interval_s=args.evaluate_interval,
            selector=selector_for(args), probe_interval_s=args.probe_interval,
            transport_options=transport_options(args),
        )
        self._video: asyncio.Task[None] | None = None

    async def on_command(self, command: dict[str, Any]) -> dict[str, Any]:
        action = command.get("action")
        if action == "reboot":
            self.started = time.monotonic()
            return {"rebooted": True}
        if action == "capture":
            return {"captured": True, "image_ref": None}
        raise ValueError(f"unsupported action {action!r}")

    async def on_video(self, push: dict[str, Any]) -> None:
        if self._video is not None:
            self._video.cancel()
            self._video = None
        if push.get("action") == "start":
            fps = max(0.1, min(30.0, float(push.get("max_fps") or 2)))
            self._video = asyncio.create_task(self._stream(1 / fps))

    async def _stream(self, interval_s: float) -> None:
        while True:
            await self.client.send_frame(FRAME_JPEG)
            await asyncio.sleep(interval_s)

    async def run(self, stop: asyncio.Event) -> None:
        await self.client.start()
        producers = [asyncio.create_task(self._detections(stop)),
                     asyncio.create_task(self._health(stop))]
        await stop.wait()
        for task in producers + ([self._video] if self._video else []):
            task.cancel()
        await asyncio.gather(*producers, return_exceptions=True)

    async def _detections(self, stop: asyncio.Event) -> None:
        # About ``rate`` reads a second: vehicles arrive at random, and each one is
        # read 1-4 times a fraction of a second apart, as a camera sees a car pass.
        # Mean reads per vehicle is 2.5, so the gap between vehicles is what is left of
        # 2.5 / rate once the 1.5 follow-up reads are accounted for (always > 1 / rate).
        intra = min(0.5, 1 / self.rate) if self.rate > 0 else 0.0
        gap = 2.5 / self.rate - 1.5 * intra if self.rate > 0 else 3600.0
        while not stop.is_set():
            if self.rate > 0 and self.stream.mid_passage:
                await asyncio.sleep(intra * self.rng.uniform(0.5, 1.5))
            else:
                await asyncio.sleep(self.rng.expovariate(1 / gap))
            await self.client.send_detection(**self.stream.next_read())

    async def _health(self, stop: asyncio.Event) -> None:
        await asyncio.sleep(self.rng.uniform(0, self.health_interval_s))
        while not stop.is_set():
            await self.client.send_health(
                cpu_percent=round(self.rng.uniform(10, 70), 1),
                memory_percent=round(self.rng.uniform(30, 80), 1),
                temperature_c=round(self.rng.uniform(35, 65), 1),
                disk_percent=round(self.rng.uniform(10, 60), 1),
                uptime_s=int(time.monotonic() - self.started),
                fps=round(self.rng.uniform(12, 25), 1), firmware="edge-sim 1.0",
            )
            await asyncio.sleep(self.health_interval_s)

    async def close(self, drain_s: float) -> None:
        await self.client.stop(drain_timeout_s=drain_s)
        self.log.close()


def totals(cameras: list[Camera]) -> dict[str, Any]:
    out: dict[str, Any] = {"cameras": len(cameras), "transports": {}}
    for cam in cameras:
        for key, value in cam.client.stats().items():
            if key == "transport":
                out["transports"][value] = out["transports"].get(value, 0) + 1
            else:
                out[key] = out.get(key, 0) + value
    return out


def progress_line(t: dict[str, Any], elapsed: float) -> str:
    mix = " ".join(f"{k} {v}" for k, v in sorted(t["transports"].items()))
    return (f"[{elapsed:5.0f}s] produced {t.get('produced', 0)} sent {t.get('sent', 0)} "
            f"acked {t.get('acked', 0)} dup {t.get('duplicate', 0)} "
            f"rejected {t.get('rejected', 0)} queued {t.get('queued', 0)} | {mix}")


async def report_progress(cameras: list[Camera], stop: asyncio.Event) -> None:
    started, tty = time.monotonic(), sys.stderr.isatty()
    while True:
        line = progress_line(totals(cameras), time.monotonic() - started)
        sys.stderr.write(("\r" + line + "\x1b[K") if tty else line + "\n")
        sys.stderr.flush()
        if stop.is_set():
            break
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
    if tty:
        sys.stderr.write("\n")


async def simulate(args: argparse.Namespace) -> dict[str, Any]:
    os.makedirs(args.state_dir, exist_ok=True)
    creds = load_credentials(args.credentials, args.cameras)
    cameras = [Camera(args, c, args.seed + i) for i, c in enumerate(creds)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    runs = [asyncio.create_task(c.run(stop)) for c in cameras]
    progress = asyncio.create_task(report_progress(cameras, stop))
    if args.duration:
        loop.call_later(args.duration, stop.set)
    await stop.wait()
    await asyncio.gather(*runs, return_exceptions=True)
    await asyncio.gather(*(c.close(args.drain) for c in cameras), return_exceptions=True)
    await progress
    summary = {**totals(cameras), "state_dir": os.path.abspath(args.state_dir)}
    with open(os.path.join(args.state_dir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m edge.simulate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--cameras", type=int, default=10)
    p.add_argument("--rate", type=float, default=1.0,
                   help="about this many detections per second per camera")
    p.add_argument("--protocol", choices=PROTOCOLS, default="auto")
    p.add_argument("--realtime", choices=("websocket", "socketio"), default="websocket",
                   help="the top level for --protocol auto")
    p.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    p.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until Ctrl-C")
    p.add_argument("--credentials")
    p.add_argument("--state-dir", default="sim-state")
    p.add_argument("--health-interval", type=float, default=10.0)
    p.add_argument("--evaluate-interval", type=float, default=5.0)
    p.add_argument("--probe-interval", type=float, default=15.0,
                   help="seconds between asking for the recommendation below the top level")
    p.add_argument("--up-after", type=int, default=3, help="evaluations before moving up")
    p.add_argument("--down-after", type=int, default=2, help="evaluations before moving down")
    p.add_argument("--min-dwell", type=float, default=30.0, help="seconds on a level before moving up")
    p.add_argument("--offline-retry", type=float, default=5.0, help="seconds offline before retrying")
    p.add_argument("--offline-retry-max", type=float, default=60.0, help="cap of the retry backoff")
    p.add_argument("--ack-timeout", type=float, default=10.0,
                   help="seconds to wait for an ack (REST: for the answer) before the link counts as failed")
    p.add_argument("--ws-server", help="base URL for WebSocket only (default --server)")
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for acks at the end")
    p.add_argument("--compression", action="store_true", help="gzip payloads")
    p.add_argument("--encrypt", action="store_true", help="Fernet with each payload_key")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    summary = asyncio.run(simulate(parse_args(argv)))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
