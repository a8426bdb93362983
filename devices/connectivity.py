"""Connectivity score and protocol recommendation (CONTRACT section 7).

score = weighted mean of four factors, each normalised to 0..1:
  latency      1 at <= 50 ms, 0 at >= 1000 ms, linear between   (weight 0.3)
  packet loss  1 at 0 %, 0 at >= 10 %                          (weight 0.3)
  bandwidth    kbps / 2000, capped at 1                         (weight 0.2)
  uptime       uptime_percent / 100                             (weight 0.2)
A factor with no measurement is left out and the weights of the others are
rescaled; with no measurement at all the score is 1 (assume a good link
until told otherwise). Recommendation: websocket at >= 0.8, rest at >= 0.5,
else mqtt.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import Device, HealthLog

WEIGHTS = {"latency": 0.3, "packet_loss": 0.3, "bandwidth": 0.2, "uptime": 0.2}


@dataclass(frozen=True)
class Recommendation:
    recommended: str
    score: float
    factors: dict[str, float]

    def as_dict(self) -> dict:
        return {"recommended": self.recommended, "score": self.score, "factors": self.factors}


def factors(latency_ms=None, bandwidth_kbps=None, packet_loss=None, uptime_percent=None) -> dict[str, float]:
    out = {}
    if latency_ms is not None:
        out["latency"] = _clamp(1 - (latency_ms - 50) / 950)
    if packet_loss is not None:
        out["packet_loss"] = _clamp(1 - packet_loss / 0.10)
    if bandwidth_kbps is not None:
        out["bandwidth"] = _clamp(bandwidth_kbps / 2000)
    if uptime_percent is not None:
        out["uptime"] = _clamp(uptime_percent / 100)
    return out


def score(measured: dict[str, float]) -> float:
    if not measured:
        return 1.0
    total = sum(WEIGHTS[k] for k in measured)
    return round(sum(WEIGHTS[k] * v for k, v in measured.items()) / total, 3)


def protocol_for(value: float) -> str:
    return "websocket" if value >= 0.8 else "rest" if value >= 0.5 else "mqtt"


def recommend(device: Device) -> Recommendation:
    latest = (
        HealthLog.objects.filter(device=device)
        .exclude(latency_ms=None, bandwidth_kbps=None, packet_loss=None, uptime_percent=None)
        .order_by("-reported_at")
        .first()
    )
    measured = (
        factors(latest.latency_ms, latest.bandwidth_kbps, latest.packet_loss, latest.uptime_percent) if latest else {}
    )
    value = score(measured)
    return Recommendation(protocol_for(value), value, {k: round(v, 3) for k, v in measured.items()})


def _clamp(value: float) -> float:
    return max(0.0, min(1.0, value))
