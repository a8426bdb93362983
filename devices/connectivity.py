"""Connectivity score, protocol recommendation and observed protocol switches (CONTRACT section 7).

score = weighted mean of four factors, each normalised to 0..1:
  latency      1 at <= 50 ms, 0 at >= 1000 ms, linear between   (weight 0.3)
  packet loss  1 at 0 %, 0 at >= 10 %                          (weight 0.3)
  bandwidth    kbps / 2000, capped at 1                         (weight 0.2)
  uptime       uptime_percent / 100                             (weight 0.2)
Inputs: the newest health report with network figures; the latency is the
worse of the camera's figure and the server's own ping round trip
(Device.measured_latency_ms) when that is under MEASURED_FRESH_S old. A
factor with no measurement is left out and the other weights rescaled; with
no measurement at all the score is 1. Each protocol needs a score: websocket
0.8, rest 0.5, mqtt 0. The recommendation is the first protocol of the
device's deployment profile order whose need the score meets (urban gives the
contract's ladder; `mobile` also keeps its current protocol while the score
is within HYSTERESIS of the boundary). docs/devices.md has the details.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import EllipsisType
from typing import Any

from django.apps import apps
from django.db import IntegrityError, transaction
from django.db.models import Max, Min, OuterRef, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from . import channels
from .models import Device, HealthLog, ProtocolSwitch

WEIGHTS = {"latency": 0.3, "packet_loss": 0.3, "bandwidth": 0.2, "uptime": 0.2}
NEEDS = {"websocket": 0.8, "socketio": 0.8, "rest": 0.5, "mqtt": 0.0}
PROFILE_ORDERS = {
    "urban": ("websocket", "rest", "mqtt"),
    "suburban": ("rest", "websocket", "mqtt"),
    "rural": ("mqtt", "rest", "local"),  # "local": the camera's own store, when even MQTT fails
    "mobile": ("websocket", "rest", "mqtt"),
}
MEASURED_FRESH_S = 600
HYSTERESIS = 0.05


@dataclass(frozen=True)
class Recommendation:
    recommended: str
    score: float
    factors: dict[str, float]
    profile: str = "urban"

    def as_dict(self) -> dict:
        return {"recommended": self.recommended, "score": self.score, "factors": self.factors, "profile": self.profile}


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


def profile_order(profile: str) -> list[str]:
    return list(PROFILE_ORDERS.get(profile, PROFILE_ORDERS["urban"]))


def protocol_for(value: float, profile: str = "urban", current: str = "") -> str:
    order = [p for p in profile_order(profile) if p in NEEDS]
    chosen = _first_met(value, order)
    if profile == "mobile" and current in order and chosen != current:
        if current in (_first_met(value + HYSTERESIS, order), _first_met(value - HYSTERESIS, order)):
            return current  # too close to the boundary to be worth a switch while moving
    return chosen


def _first_met(value: float, order: list[str]) -> str:
    return next((p for p in order if value >= NEEDS[p]), order[-1])


def recommend(device: Device, now: datetime | None = None, latest: HealthLog | None | EllipsisType = ...) -> Recommendation:
    """`latest`: the device's newest health report with network figures, when the caller fetched it already."""
    now = now or timezone.now()
    if latest is ...:
        latest = _measured_reports().filter(device=device).first()
    latency = latest.latency_ms if latest else None
    fresh = device.measured_latency_at and (now - device.measured_latency_at).total_seconds() <= MEASURED_FRESH_S
    if fresh and device.measured_latency_ms is not None:
        latency = max(latency or 0.0, device.measured_latency_ms)
    measured = factors(latency, *((latest.bandwidth_kbps, latest.packet_loss, latest.uptime_percent) if latest else ()))
    value = score(measured)
    chosen = protocol_for(value, device.profile, device.recommended_protocol)
    return Recommendation(chosen, value, {k: round(v, 3) for k, v in measured.items()}, device.profile)


def _measured_reports():
    return HealthLog.objects.exclude(latency_ms=None, bandwidth_kbps=None, packet_loss=None,
                                     uptime_percent=None).order_by("-reported_at")  # fmt: skip


def refresh(device_ids: set[str], now: datetime | None = None) -> list[str]:
    """Recompute the score of devices with new measurements; push the recommendation where it changed.

    Returns the ids whose recommendation changed. Two queries for any number of devices (each device's newest
    report found by its own index range), then a write only where something changed.
    """
    newest = Subquery(_measured_reports().filter(device=OuterRef("pk")).values("pk")[:1])
    devices = list(Device.objects.filter(id__in=device_ids).annotate(newest_report=newest))
    reports = HealthLog.objects.in_bulk([d.newest_report for d in devices if d.newest_report is not None])
    changed = []
    for device in devices:
        rec = recommend(device, now, reports.get(device.newest_report))
        if rec.recommended == device.recommended_protocol and rec.score == device.connectivity_score:
            continue
        Device.objects.filter(pk=device.pk).update(recommended_protocol=rec.recommended, connectivity_score=rec.score)
        if rec.recommended != device.recommended_protocol:
            changed.append(device.id)
            device.recommended_protocol = rec.recommended
            channels.push(device, "protocol", {"recommended": rec.recommended, "score": rec.score})
    return changed


# --- switches ------------------------------------------------------------------------------


def record_reported_switches(device_id: str, reports: Any) -> int:
    """Store switches a camera reported in a health payload (`protocol_switches`); repeats are ignored.

    Returns how many were new.
    """
    rows = []
    for r in reports if isinstance(reports, list) else []:
        at = parse_datetime(str(r.get("at", ""))) if isinstance(r, dict) else None
        if at is None or not r.get("to"):
            continue
        rows.append(ProtocolSwitch(
            device_id=device_id, source="device", from_transport=str(r.get("from") or "")[:16],
            to_transport=str(r["to"])[:16], reason=str(r.get("reason") or "")[:200], at=at,
            score=r.get("score") if isinstance(r.get("score"), (int, float)) else None,
            recommended=str(r.get("recommended") or "")[:16],
        ))  # fmt: skip
    known = set(
        ProtocolSwitch.objects.filter(device_id=device_id, source="device", at__in=[r.at for r in rows])
        .values_list("from_transport", "to_transport", "at")
    )  # health reports repeat recent switches; only new ones are stored and broadcast
    fresh = [r for r in rows if (r.from_transport, r.to_transport, r.at) not in known]
    ProtocolSwitch.objects.bulk_create(fresh, ignore_conflicts=True)
    for switch in fresh:
        channels.announce("protocol_switch", switch)
    return len(fresh)


def observe_transports(since: datetime, until: datetime) -> list[ProtocolSwitch]:
    """Record a switch for each device whose newest messages now arrive over another transport than before.

    "Newest" by when the camera sent them, not when they were stored: a backlog the camera handed to the
    broker before it moved on can reach the ledger after its first messages over the new transport (the
    bridge still working through it), and is no switch back. One aggregate query over the ledger for the
    window; the device's own reason is used when it reported the same switch (within a minute).
    """
    ledger = apps.get_model("transport", "Message").objects
    spans = (
        ledger.filter(received_at__gt=since, received_at__lte=until)
        .values("device_id", "received_via")
        .annotate(first=Min("received_at"), newest_sent=Max("sent_at"))
    )
    newest: dict[str, dict] = {}
    for span in spans:
        if span["device_id"] not in newest or span["newest_sent"] > newest[span["device_id"]]["newest_sent"]:
            newest[span["device_id"]] = span
    switches = []
    for device in Device.objects.filter(id__in=newest).only("id", "observed_transport", "connectivity_score",
                                                               "recommended_protocol"):  # fmt: skip
        span = newest[device.id]
        if span["received_via"] == device.observed_transport:
            continue
        if device.observed_transport and _sent_before_the_latest_over(ledger, device, span["newest_sent"]):
            continue
        Device.objects.filter(pk=device.pk).update(observed_transport=span["received_via"])
        if device.observed_transport:
            switches.append(_server_switch(device, span["received_via"], span["first"]))
    return switches


def _sent_before_the_latest_over(ledger, device: Device, sent_at: datetime) -> bool:
    """Whether the last message stored over the device's current transport was sent after `sent_at`: then
    messages sent at `sent_at` over another transport are late arrivals, not a move."""
    latest = (
        ledger.filter(device=device, received_via=device.observed_transport).order_by("-received_at")
        .values_list("sent_at", flat=True).first()
    )  # fmt: skip
    return latest is not None and latest > sent_at


def _server_switch(device: Device, to: str, at: datetime) -> ProtocolSwitch:
    stated = (
        ProtocolSwitch.objects.filter(device=device, source="device", from_transport=device.observed_transport,
                                      to_transport=to, at__range=(at - timedelta(seconds=60), at + timedelta(seconds=5)))
        .values_list("reason", flat=True).first()
    )  # fmt: skip
    switch = ProtocolSwitch(
        device=device, source="server", from_transport=device.observed_transport, to_transport=to, at=at,
        reason=stated or f"messages now arrive over {to}", score=device.connectivity_score,
        recommended=device.recommended_protocol,
    )
    try:
        with transaction.atomic():
            switch.save()
    except IntegrityError:  # the same switch seen by an overlapping window
        return switch
    channels.announce("protocol_switch", switch)
    return switch


def _clamp(value: float) -> float:
    return max(0.0, min(1.0, value))
