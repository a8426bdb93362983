"""Finding detections: the filters the operator API and the dashboard share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from .models import Detection
from .plates import normalize


@dataclass(frozen=True)
class Query:
    plate: str = ""
    device: str = ""
    since: datetime | None = None
    until: datetime | None = None


def search(q: Query) -> QuerySet[Detection]:
    qs = Detection.objects.all()
    if q.plate:
        qs = qs.filter(plate_normalized=normalize(q.plate))
    if q.device:
        qs = qs.filter(device_id=q.device)
    if q.since:
        qs = qs.filter(captured_at__gte=q.since)
    if q.until:
        qs = qs.filter(captured_at__lt=q.until)
    return qs.order_by("-captured_at", "-id")
