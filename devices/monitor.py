"""The communication monitor: how each protocol and each device is doing over a window.

Read from the pipeline's own records: the ledger (transport.Message, one row
per accepted message, with the transport it came over and its latency) and
refused input (transport.RejectedMessage). Per protocol and per device:
messages, share of all traffic, success rate (accepted / (accepted +
rejected)), average and p95 latency; per device also sequence gaps (numbers
between the lowest and highest seen in the window that never arrived) and
repeats (a sequence number carried by more than one message_id).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.apps import apps
from django.db import connection
from django.db.models import Aggregate, Avg, Count, FloatField, Max, Min
from django.utils import timezone

WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_S = 31 * 86400
_WINDOW = re.compile(r"^(\d+)([smhd])$")


class WindowError(ValueError):
    pass


class Percentile(Aggregate):
    """PostgreSQL's PERCENTILE_CONT(p) WITHIN GROUP (ORDER BY expr)."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


@dataclass
class Figures:
    messages: int = 0
    accepted: int = 0
    rejected: int = 0
    share: float = 0.0
    success_rate: float | None = None
    avg_latency_ms: float | None = None
    p95_latency_ms: float | None = None


def parse_window(text: str | None) -> timedelta:
    match = _WINDOW.match((text or "1h").strip())
    seconds = int(match.group(1)) * WINDOW_UNITS[match.group(2)] if match else 0
    if not 0 < seconds <= MAX_WINDOW_S:
        raise WindowError("window must be a number and a unit (s, m, h, d), e.g. 15m or 1h, at most 31d.")
    return timedelta(seconds=seconds)


def by_protocol(window: timedelta, now: datetime | None = None) -> dict[str, Figures]:
    since = (now or timezone.now()) - window
    return _figures(_accepted(since, ["received_via"]), _rejected(since, ["transport"]), key=lambda r: r[0])


def by_device(window: timedelta, device_ids: list[str] | None = None, now: datetime | None = None) -> dict[str, dict]:
    """Per device: all its traffic, each protocol's (share = of that device's traffic), sequence gaps and repeats."""
    since = (now or timezone.now()) - window
    overall = _figures(_accepted(since, ["device_id"], device_ids), _rejected(since, ["device_id"], device_ids),
                       key=lambda k: k[0])  # fmt: skip
    per_pair = _figures(_accepted(since, ["device_id", "received_via"], device_ids),
                        _rejected(since, ["device_id", "transport"], device_ids), key=lambda k: k)  # fmt: skip
    out: dict[str, dict] = {}
    for device_id, figures in overall.items():
        if device_id is not None:  # refusals before authentication belong to no device
            out[device_id] = {"all": asdict(figures), "protocols": {}, **_sequence_stats(since, device_id)}
    for (device_id, via), figures in per_pair.items():
        if device_id in out:
            figures.share = round(figures.messages / overall[device_id].messages, 4)
            out[device_id]["protocols"][via] = asdict(figures)
    return out


def _accepted(since: datetime, group: list[str], device_ids: list[str] | None = None) -> list[dict]:
    rows = _messages(since, device_ids).values(*group).annotate(n=Count("message_id"), avg=Avg("latency_ms"))
    if connection.vendor == "postgresql":
        rows = rows.annotate(p95=Percentile("latency_ms", percentile=0.95))
    out = []
    for row in rows:
        key = tuple(row[g] for g in group)
        p95 = row["p95"] if "p95" in row else _p95_portable(since, dict(zip(group, key)))
        out.append({"key": key, "n": row["n"], "avg": row["avg"], "p95": p95})
    return out


def _rejected(since: datetime, group: list[str], device_ids: list[str] | None = None) -> list[dict]:
    rows = apps.get_model("transport", "RejectedMessage").objects.filter(received_at__gt=since)
    if device_ids is not None:
        rows = rows.filter(device_id__in=device_ids)
    return [{"key": tuple(r[g] for g in group), "n": r["n"]} for r in rows.values(*group).annotate(n=Count("id"))]


def _figures(accepted: list[dict], rejected: list[dict], key) -> dict:
    """Fold accepted and rejected counts into Figures under `key(row key)`; shares are of the whole set."""
    out: dict = {}
    for row in accepted:
        f = out.setdefault(key(row["key"]), Figures())
        f.accepted += row["n"]
        f.avg_latency_ms, f.p95_latency_ms = _round(row["avg"]), _round(row["p95"])
    for row in rejected:
        out.setdefault(key(row["key"]), Figures()).rejected += row["n"]
    total = sum(f.accepted + f.rejected for f in out.values())
    for f in out.values():
        f.messages = f.accepted + f.rejected
        f.share = round(f.messages / total, 4) if total else 0.0
        f.success_rate = round(f.accepted / f.messages, 4) if f.messages else None
    return out


def _sequence_stats(since: datetime, device_id: str) -> dict[str, int]:
    rows = _messages(since, [device_id]).exclude(sequence=None)
    agg = rows.aggregate(low=Min("sequence"), high=Max("sequence"), n=Count("message_id"),
                         distinct=Count("sequence", distinct=True))  # fmt: skip
    if not agg["n"]:
        return {"sequence_gaps": 0, "sequence_repeats": 0}
    return {"sequence_gaps": agg["high"] - agg["low"] + 1 - agg["distinct"], "sequence_repeats": agg["n"] - agg["distinct"]}


def _messages(since: datetime, device_ids: list[str] | None = None):
    rows = apps.get_model("transport", "Message").objects.filter(received_at__gt=since)
    return rows if device_ids is None else rows.filter(device_id__in=device_ids)


def _p95_portable(since: datetime, where: dict) -> float | None:
    values = sorted(v for v in _messages(since).filter(**where).values_list("latency_ms", flat=True) if v is not None)
    if not values:
        return None
    rank = 0.95 * (len(values) - 1)  # linear interpolation, as PERCENTILE_CONT does
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
