"""The load generators as processes: Node (bench/load/camera.js) and wrk (bench/load/rest_single*.lua).

Neither is Python, so the load costs the two shared cores as little as it
can; the sampler counts what it does cost ("client").
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .fleet import Camera
from .measure import Sent, read_node_log, read_wrk_logs
from .stack import ROOT

LOAD = ROOT / "bench" / "load"
HEALTH_EVERY = 50  # one message in 50 from each camera is a health report, the rest are reads


@dataclass
class Result:
    sent: Sent
    window_us: tuple[float, float]  # the measured window: after the warm-up, before the end of sending
    summary: dict


class NodeCameras:
    """camera.js over one transport; `mode` saturate (a window of unacked messages per camera) or rate."""

    def __init__(self, work: Path, name: str, transport: str, cameras: list[Camera], base: str, mqtt_port: int, *,
                 mode: str, warmup_s: float, measure_s: float, **options) -> None:  # fmt: skip
        self.log = work / f"{name}.log"
        config = {"transport": transport, "mode": mode, "base": base, "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
                  "cameras": [c.as_dict() for c in cameras], "warmup_s": warmup_s, "measure_s": measure_s,
                  "log": str(self.log), "seed": random.randrange(1, 10**6), "health_every": HEALTH_EVERY,
                  **options}  # fmt: skip
        config_file = work / f"{name}.json"
        config_file.write_text(json.dumps(config))
        self.proc = subprocess.Popen(["node", str(LOAD / "camera.js"), str(config_file)], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.timeout = warmup_s + measure_s + 60

    def result(self) -> Result:
        out, err = self.proc.communicate(timeout=self.timeout)
        if self.proc.returncode != 0:
            raise SystemExit(f"bench: load generator {self.log.stem} failed:\n{err[-3000:]}")
        summary = json.loads(out)
        return Result(read_node_log(self.log), tuple(summary["window"]), summary)


class WrkCameras:
    """wrk with rest_single.lua (or, given `rate`, rest_single_rate.lua) posting to `path` for warm-up + measure."""

    def __init__(self, work: Path, name: str, cameras: list[Camera], base: str, path: str, *, warmup_s: float,
                 measure_s: float, connections: int = 16, rate: float | None = None) -> None:  # fmt: skip
        self.prefix = work / name
        cameras_file = work / f"{name}.cameras"
        cameras_file.write_text("".join(f"{c.id} {c.key}\n" for c in cameras))
        script = "rest_single_rate.lua" if rate else "rest_single.lua"
        args = [str(cameras_file), str(self.prefix), str(random.randrange(1, 2**31)), str(HEALTH_EVERY)]
        args += [str(rate)] if rate else []
        self.started = time.time()
        self.proc = subprocess.Popen(
            ["wrk", "-t1", f"-c{connections}", f"-d{warmup_s + measure_s:g}s", "--timeout", "10s",
             "-s", str(LOAD / script),
             base + path, "--", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.window = ((self.started + warmup_s) * 1e6, (self.started + warmup_s + measure_s) * 1e6)
        self.timeout = warmup_s + measure_s + 30

    def result(self) -> Result:
        out, err = self.proc.communicate(timeout=self.timeout)
        if self.proc.returncode != 0:
            raise SystemExit(f"bench: wrk failed:\n{out[-2000:]}\n{err[-2000:]}")
        summary = json.loads(out.strip().splitlines()[-1])
        return Result(read_wrk_logs(self.prefix), self.window, summary)
