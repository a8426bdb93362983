"""CPU and memory of every process of the stack, sampled in the background (psutil).

Groups: the server's processes by role (Daphne, bridge, worker, watch loop,
Mosquitto), PostgreSQL (the backends of the benchmark database plus the WAL
writer, checkpointer and background writer), Redis (shared with other users
of this machine), the load generators ("client") and this process ("bench").
"other" is the machine's busy CPU time that none of them used: other people's
work, which makes a run less trustworthy.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from dataclasses import dataclass, field

import psutil
import psycopg

POSTGRES_HELPERS = ("walwriter", "checkpointer", "background writer")
MB = 1024 * 1024


@dataclass
class Sample:
    at: float  # time.time()
    cpu: dict[str, float]  # group -> CPU seconds used so far by the group's processes (only those alive)
    rss: dict[str, int]  # group -> bytes (PostgreSQL: its largest process)
    busy: float  # the machine's busy CPU seconds so far
    steal: float  # CPU seconds the hypervisor did not give this machine


@dataclass
class Sampler:
    database_url: str
    database: str
    interval: float = 0.5
    roles: dict[str, list[int]] = field(default_factory=dict)  # group -> pids
    samples: list[Sample] = field(default_factory=list)
    clients: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._gone_cpu: dict[str, float] = {}  # CPU of processes that have exited, per group
        self._last_cpu: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._conn = psycopg.connect(self.database_url, autocommit=True)
        self._helpers = [
            p.pid
            for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and any(h in " ".join(p.info["cmdline"] or []) for h in POSTGRES_HELPERS)
        ]
        self._redis = [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "redis-server"]  # fmt: skip

    def start(self) -> "Sampler":
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._conn.close()

    def add_client(self, pid: int) -> None:
        self.clients.add(pid)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._sample())
            except Exception as exc:  # one bad sample must not end the sampling; say it, try again
                print(f"[bench] sampler: {exc!r}", flush=True)
            self._stop.wait(self.interval)

    def _members(self) -> dict[str, list[int]]:
        backends = [
            r[0] for r in self._conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [self.database])
        ]
        groups: dict[str, list[int]] = {}
        for role, pids in self.roles.items():
            groups[role] = [member for pid in pids for member in (pid, *self._children(pid))]
        groups["postgres"] = [pid for pid in backends if pid != self._conn.info.backend_pid] + self._helpers
        groups["redis"] = self._redis
        groups["client"] = [pid for c in list(self.clients) for pid in (c, *self._children(c))]
        groups["bench"] = [os.getpid()]
        return groups

    def _children(self, pid: int) -> list[int]:
        try:
            return [c.pid for c in self._proc(pid).children(recursive=True)]
        except psutil.Error:
            return []

    def _proc(self, pid: int) -> psutil.Process:
        if pid not in self._procs:
            self._procs[pid] = psutil.Process(pid)
        return self._procs[pid]

    def _sample(self) -> Sample:
        cpu: dict[str, float] = dict(self._gone_cpu)
        rss: dict[str, int] = {}
        alive: set[int] = set()
        for group, pids in self._members().items():
            cpu.setdefault(group, 0.0)
            for pid in pids:
                try:
                    proc = self._proc(pid)
                    with proc.oneshot():
                        t = proc.cpu_times()
                        used, resident = t.user + t.system, proc.memory_info().rss
                except psutil.Error:
                    continue
                alive.add(pid)
                self._last_cpu[pid] = (group, used)
                cpu[group] += used
                rss[group] = max(rss.get(group, 0), resident) if group == "postgres" else rss.get(group, 0) + resident
        for pid in [p for p in self._last_cpu if p not in alive]:  # exited since: keep what it used
            group, used = self._last_cpu.pop(pid)
            self._gone_cpu[group] = self._gone_cpu.get(group, 0.0) + used
            cpu[group] = cpu.get(group, 0.0) + used
        t = psutil.cpu_times()
        # guest time is already inside user and nice; steal is time the hypervisor gave to no one in this machine
        busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        return Sample(time.time(), cpu, rss, busy, getattr(t, "steal", 0.0))

    def window(self, start: float, end: float) -> dict:
        """CPU seconds and peak RSS (MB) per group between `start` and `end` (time.time()), and the machine's rest."""
        samples = self.samples
        times = [s.at for s in samples]
        first = samples[max(0, bisect.bisect_left(times, start) - 1)]
        last = samples[min(len(samples) - 1, bisect.bisect_left(times, end))]
        inside = [s for s in samples if first.at <= s.at <= last.at]
        cpu = {g: last.cpu.get(g, 0.0) - first.cpu.get(g, 0.0) for g in last.cpu}
        peak = {g: max(s.rss.get(g, 0) for s in inside) / MB for g in last.cpu}
        ours = sum(cpu.values())
        return {"seconds": last.at - first.at, "cpu_s": cpu, "peak_rss_mb": peak,
                "other_cpu_s": max(0.0, last.busy - first.busy - ours), "steal_s": last.steal - first.steal}  # fmt: skip
