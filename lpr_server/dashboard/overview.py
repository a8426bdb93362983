"""What the overview page opens with; after that the page follows /ws/dashboard/ (transport/live.py).

Every figure comes from an index or a stored column: the newest reads (index
on -captured_at), fleet counts (one aggregate over devices), the communication
monitor over a short window of the ledger (index on received_at) and open
alerts (index on raised_at).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta

from detections.alert_models import Alert
from detections.models import Detection
from devices import monitor

from . import fleet

FEED_ROWS = 20
OPEN_ALERT_ROWS = 20
MONITOR_WINDOW = timedelta(hours=1)
MONITOR_WINDOW_LABEL = "hour"  # the charts then refresh from /api/v1/stats/protocols/?window=1h


@dataclass
class Overview:
    feed: list[dict]
    counts: dict[str, int]
    devices: list[fleet.DeviceRow]
    protocols: dict[str, dict]
    monitor_window_label: str
    open_alerts: list[Alert]
    open_alert_count: int


def overview() -> Overview:
    return Overview(
        feed=recent_reads(FEED_ROWS), counts=fleet.fleet_counts(), devices=fleet.device_rows(),
        protocols={via: asdict(f) for via, f in sorted(monitor.by_protocol(MONITOR_WINDOW).items())},
        monitor_window_label=MONITOR_WINDOW_LABEL,
        open_alerts=open_alerts(OPEN_ALERT_ROWS), open_alert_count=Alert.objects.filter(acknowledged_at=None).count(),
    )  # fmt: skip


def recent_reads(limit: int) -> list[dict]:
    """The newest reads in the live feed's shape (the fields of transport.live's detection event)."""
    rows = Detection.objects.order_by("-captured_at", "-id").values(
        "message_id", "device_id", "plate", "confidence", "captured_at", "received_via", "image_id", "device__name"
    )[:limit]
    return [
        {"message_id": str(r["message_id"]), "device_id": r["device_id"], "device_name": r["device__name"],
         "plate": r["plate"], "confidence": r["confidence"], "captured_at": r["captured_at"].isoformat(),
         "via": r["received_via"], "image_ref": str(r["image_id"]) if r["image_id"] else None}
        for r in rows
    ]  # fmt: skip


def open_alerts(limit: int) -> list[Alert]:
    return list(Alert.objects.filter(acknowledged_at=None).select_related("watchlist", "device")[:limit])
