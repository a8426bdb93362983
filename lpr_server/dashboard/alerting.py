"""The alerts page: alerts (open first, or acknowledged) and the watchlists with their entries."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q

from detections import alerts
from detections.alert_models import Alert, Watchlist, WatchlistEntry

ALERT_ROWS = 100
ENTRY_ROWS = 50


@dataclass
class AlertsPage:
    show: str
    alerts: list[Alert]
    open_count: int
    watchlists: list[Watchlist]


def alerts_page(show: str = "open") -> AlertsPage:
    """`show`: open (unacknowledged), acknowledged or all; newest first (index on raised_at)."""
    show = show if show in ("open", "acknowledged", "all") else "open"
    qs = Alert.objects.select_related("watchlist", "device", "acknowledged_by")
    if show != "all":
        qs = qs.filter(acknowledged_at__isnull=show == "open")
    watchlists = list(Watchlist.objects.annotate(
        entry_count=Count("entries", distinct=True),
        open_alerts=Count("alerts", filter=Q(alerts__acknowledged_at=None), distinct=True),
    ))  # fmt: skip
    entries: dict[int, list[WatchlistEntry]] = {}
    for entry in WatchlistEntry.objects.filter(watchlist__in=watchlists).select_related("device").order_by("-priority", "value"):
        held = entries.setdefault(entry.watchlist_id, [])
        if len(held) < ENTRY_ROWS:
            held.append(entry)
    for w in watchlists:
        w.shown_entries = entries.get(w.id, [])
    return AlertsPage(show, list(qs[:ALERT_ROWS]), Alert.objects.filter(acknowledged_at=None).count(), watchlists)


def acknowledge(alert_id: int, user, comment: str = "") -> tuple[Alert, bool]:
    """Acknowledge an alert; False when someone else had already (their acknowledgement stands)."""
    try:
        return alerts.acknowledge(alert_id, user, comment), True
    except alerts.AlreadyAcknowledged as exc:
        return exc.args[0], False
