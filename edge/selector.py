"""Connectivity score and transport selection (CONTRACT section 7).

Score
-----
The same formula as the server's ``devices/connectivity.py``, so camera and
server agree on a link. Each measurement is normalised to 0..1 (1 = good),
clamped, then combined as a weighted mean over the factors that are known
(weights rescaled)::

    latency      = 1 - (latency_ms - 50) / 950        1 at <= 50 ms, 0 at >= 1 s     weight 0.3
    packet_loss  = 1 - packet_loss / 0.10             1 at 0, 0 at >= 0.10 (10 %)    weight 0.3
    bandwidth    = bandwidth_kbps / 2000              1 at >= 2 Mbit/s               weight 0.2
    uptime       = uptime_percent / 100                                              weight 0.2

    score = sum(weight * factor) / sum(weight of the known factors)

``packet_loss`` is a fraction (0.02 = 2 %). The recommendation is
``websocket`` at score >= 0.8, ``rest`` at >= 0.5, else ``mqtt``.
:func:`connectivity_score` and :func:`recommend` use only the standard library.

Switching
---------
Levels, best first: the realtime transport (``websocket`` or ``socketio``),
``rest``, ``mqtt``, ``offline`` (messages only go to the local outbox).

* Down, at once, on failure: realtime connection lost / high latency -> rest;
  rest timeout or server error -> mqtt; mqtt failing -> offline.
* Down on measurement: when the local score or the server's recommendation
  names a lower level for ``down_after`` consecutive evaluations.
* Up: only when the server's recommendation *and* the local score both allow a
  higher level, for ``up_after`` consecutive evaluations, and at least
  ``min_dwell_s`` after the previous switch. A signal that oscillates around a
  threshold therefore never makes the device flap.
* Offline: after ``offline_retry_s`` (doubling up to ``offline_retry_max_s``, 60 s, while it keeps
  failing) the selector retries mqtt.
* A ``switch_protocol`` command forces a level and holds it for ``hold_s``
  (failures still move it down).

Every switch is a :class:`Switch` with a reason, kept in :attr:`history` and
handed out once by :meth:`pop_unreported` so the client can report it.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

WEIGHTS = {"latency": 0.3, "packet_loss": 0.3, "bandwidth": 0.2, "uptime": 0.2}
WEBSOCKET_AT = 0.8
REST_AT = 0.5
REALTIME = ("websocket", "socketio")
FAILURE_KINDS = (
    "connect_failed", "connection_lost", "timeout", "server_error", "auth", "high_latency",
)


def _clamp(x: float) -> float:
    return max(0.0, min(1.0, x))


def normalise(
    latency_ms: float | None = None,
    bandwidth_kbps: float | None = None,
    packet_loss: float | None = None,
    uptime_percent: float | None = None,
) -> dict[str, float]:
    """The known factors, each 0..1."""
    factors: dict[str, float] = {}
    if latency_ms is not None:
        factors["latency"] = _clamp(1 - (latency_ms - 50) / 950)
    if packet_loss is not None:
        factors["packet_loss"] = _clamp(1 - packet_loss / 0.10)
    if bandwidth_kbps is not None:
        factors["bandwidth"] = _clamp(bandwidth_kbps / 2000)
    if uptime_percent is not None:
        factors["uptime"] = _clamp(uptime_percent / 100)
    return factors


def connectivity_score(
    latency_ms: float | None = None,
    bandwidth_kbps: float | None = None,
    packet_loss: float | None = None,
    uptime_percent: float | None = None,
) -> tuple[float | None, dict[str, float]]:
    """``(score, factors)``; score is None when nothing is known."""
    factors = normalise(latency_ms, bandwidth_kbps, packet_loss, uptime_percent)
    if not factors:
        return None, factors
    total = sum(WEIGHTS[k] for k in factors)
    return round(sum(WEIGHTS[k] * v for k, v in factors.items()) / total, 3), factors


def recommend(score: float) -> str:
    if score >= WEBSOCKET_AT:
        return "websocket"
    if score >= REST_AT:
        return "rest"
    return "mqtt"


@dataclass
class Switch:
    from_: str
    to: str
    reason: str
    at: str
    score: float | None = None
    recommended: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["from"] = d.pop("from_")
        return d


@dataclass
class LinkStats:
    """Local measurements, as exponentially weighted moving averages."""

    alpha: float = 0.2
    latency_ms: float | None = None
    loss: float | None = None
    connected: float | None = None
    reported: dict[str, float] = field(default_factory=dict)

    def _ewma(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.alpha * (new - old)

    def record_send(self, ok: bool, rtt_ms: float | None) -> None:
        self.loss = self._ewma(self.loss, 0.0 if ok else 1.0)
        if ok and rtt_ms is not None:
            self.latency_ms = self._ewma(self.latency_ms, rtt_ms)

    def record_connected(self, up: bool) -> None:
        self.connected = self._ewma(self.connected, 1.0 if up else 0.0)

    def network(self) -> dict[str, float]:
        """Figures for a health payload's ``network`` (camera-reported values win)."""
        out: dict[str, float] = {}
        if self.latency_ms is not None:
            out["latency_ms"] = round(self.latency_ms, 1)
        if self.loss is not None:
            out["packet_loss"] = round(self.loss, 4)
        if self.connected is not None:
            out["uptime_percent"] = round(self.connected * 100, 2)
        out.update(self.reported)
        return out

    def score(self) -> float | None:
        n = self.network()
        return connectivity_score(
            n.get("latency_ms"), n.get("bandwidth_kbps"), n.get("packet_loss"),
            n.get("uptime_percent"),
        )[0]


class ProtocolSelector:
    def __init__(
        self,
        top: str = "websocket",
        fixed: str | None = None,
        up_after: int = 3,
        down_after: int = 2,
        min_dwell_s: float = 30.0,
        high_latency_ms: float = 1500.0,
        offline_retry_s: float = 5.0,
        offline_retry_max_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if top not in REALTIME:
            raise ValueError(f"top must be one of {REALTIME}")
        self.levels = (top, "rest", "mqtt", "offline")
        self.fixed = fixed
        self.up_after, self.down_after = up_after, down_after
        self.min_dwell_s, self.high_latency_ms = min_dwell_s, high_latency_ms
        self.offline_retry_s, self.offline_retry_max_s = offline_retry_s, offline_retry_max_s
        self._clock = clock
        self.current = fixed or top
        self.stats = LinkStats()
        self.recommended: str | None = None
        self.server_score: float | None = None
        self.history: deque[Switch] = deque(maxlen=200)
        self._unreported: list[Switch] = []
        self._since = clock()
        self._hold_until = 0.0
        self._up_streak = self._down_streak = 0
        self._offline_failures = 0

    # -- inputs ----------------------------------------------------------------
    def on_recommendation(self, recommended: str | None, score: float | None = None) -> None:
        if recommended in ("websocket", "socketio", "rest", "mqtt"):
            self.recommended = recommended
        if score is not None:
            self.server_score = float(score)

    def record_send(self, ok: bool, rtt_ms: float | None = None) -> Switch | None:
        """One send attempt; ``rtt_ms`` is its round trip (None when not a fair sample)."""
        self.stats.record_send(ok, rtt_ms)
        lat = self.stats.latency_ms
        if self.current in REALTIME and lat is not None and lat > self.high_latency_ms:
            self.stats.latency_ms = None  # judge the next transport on its own figures
            return self.on_failure("high_latency")
        return None

    def on_failure(self, kind: str) -> Switch | None:
        """Step one level down (fixed mode: to offline, to be retried later)."""
        self.stats.record_send(False, None)
        if self.current in ("mqtt", "offline") or self.fixed:
            self._offline_failures += 1
        if self.current == "offline":
            return None
        target = "offline" if self.fixed else self.levels[self.levels.index(self.current) + 1]
        return self._switch(target, f"{self.current} {kind}")

    def force(self, protocol: str, reason: str = "command", hold_s: float = 600.0) -> Switch | None:
        if protocol not in REALTIME + ("rest", "mqtt"):
            raise ValueError(f"unknown protocol {protocol!r}")
        if protocol in REALTIME:
            self.levels = (protocol,) + self.levels[1:]
        if self.fixed is not None:
            self.fixed = protocol
        self._hold_until = self._clock() + hold_s
        return self._switch(protocol, reason)

    # -- periodic --------------------------------------------------------------
    def evaluate(self, connected: bool | None = None) -> Switch | None:
        """One evaluation tick: hysteresis up/down, and the offline retry."""
        if connected is not None:
            self.stats.record_connected(connected)
        if self.current == "offline":
            return self._maybe_retry()
        if self.fixed is not None or self._clock() < self._hold_until:
            return None
        target = self._target()
        cur = self.levels.index(self.current)
        if target is None or target == cur:
            self._up_streak = self._down_streak = 0
            return None
        if target > cur:
            self._up_streak, self._down_streak = 0, self._down_streak + 1
            if self._down_streak >= self.down_after:
                return self._switch(self.levels[target], self._why("degraded"))
            return None
        self._down_streak, self._up_streak = 0, self._up_streak + 1
        dwelt = self._clock() - self._since >= self.min_dwell_s
        if self._up_streak >= self.up_after and dwelt:
            return self._switch(self.levels[target], self._why("recovered"))
        return None

    def _target(self) -> int | None:
        """Best level that both the server and the local figures allow (None: no opinion)."""
        local = self.stats.score()
        local_level = self._level_of(recommend(local)) if local is not None else 0
        if self.recommended is None:
            # Without the server's word, only allow going down on local evidence.
            cur = self.levels.index(self.current)
            return local_level if local_level > cur else None
        return max(self._level_of(self.recommended), local_level)

    def _level_of(self, name: str) -> int:
        return 0 if name in REALTIME else self.levels.index(name)

    def _maybe_retry(self) -> Switch | None:
        wait = min(self.offline_retry_max_s, self.offline_retry_s * 2 ** max(0, self._offline_failures - 1))
        if self._clock() - self._since < wait:
            return None
        return self._switch(self.fixed or "mqtt", "offline retry")

    def _why(self, what: str) -> str:
        return f"{what}: local score {self.stats.score()}, server recommends {self.recommended}"

    def _switch(self, to: str, reason: str) -> Switch | None:
        if to == self.current:
            return None
        sw = Switch(
            from_=self.current, to=to, reason=reason,
            at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            score=self.stats.score(), recommended=self.recommended,
        )
        self.current = to
        self._since = self._clock()
        self._up_streak = self._down_streak = 0
        self.history.append(sw)
        self._unreported.append(sw)
        return sw

    def mark_connected(self) -> None:
        """The current transport works: reset the offline backoff."""
        self._offline_failures = 0

    def pop_unreported(self) -> list[dict[str, Any]]:
        out, self._unreported = [sw.as_dict() for sw in self._unreported], []
        return out
