"""CSV export of a search, streamed: rows are read in keyset-paged chunks and written as they go.

A million rows never sit in memory: each chunk is `CHUNK` rows fetched after
the last one sent (ordered like the search, newest first). Under ASGI
(Daphne) the response gets an async iterator, since Django would otherwise
collect a sync iterator into a list before sending it.
"""

from __future__ import annotations

import csv
from typing import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.db.models import Q, QuerySet
from django.http import StreamingHttpResponse

from .models import Detection

CHUNK = 2000
COLUMNS = [
    "id", "captured_at", "device", "site", "plate", "plate_normalized", "confidence", "region", "direction",
    "vehicle_type", "make", "model", "color", "speed_kph", "lane", "passage", "image", "received_via", "message_id",
]  # fmt: skip
_FIELDS = [
    "id", "captured_at", "device_id", "device__site", "plate", "plate_normalized", "confidence", "region",
    "direction", "vehicle", "speed_kph", "lane", "passage_id", "image_id", "received_via", "message_id",
]  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class _Line:
    """csv.writer target that hands back what it was given."""

    def write(self, value: str) -> str:
        return value


_writer = csv.writer(_Line())


def _chunk(qs: QuerySet[Detection], after: tuple | None) -> list[tuple]:
    if after is not None:
        at, pk = after
        qs = qs.filter(Q(captured_at__lt=at) | Q(captured_at=at, id__lt=pk))
    return list(qs.order_by("-captured_at", "-id").values_list(*_FIELDS)[:CHUNK])


def _line(row: tuple) -> str:
    (pk, at, device, site, plate, normalized, confidence, region, direction, vehicle, speed, lane, passage, image,
     via, message_id) = row  # fmt: skip
    vehicle = vehicle if isinstance(vehicle, dict) else {}
    cells = [pk, at.isoformat(), device, site, plate, normalized, confidence, region, direction,
             vehicle.get("type", ""), vehicle.get("make", ""), vehicle.get("model", ""), vehicle.get("color", ""),
             speed, lane, passage, image, via, message_id]  # fmt: skip
    return _writer.writerow([_safe(c) for c in cells])


def _safe(cell):
    """Text a spreadsheet would run as a formula is quoted as text (cameras choose plate strings)."""
    if cell is None:
        return ""
    if isinstance(cell, str) and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


def lines(qs: QuerySet[Detection]) -> Iterator[str]:
    yield _writer.writerow(COLUMNS)
    after = None
    while rows := _chunk(qs, after):
        for row in rows:
            yield _line(row)
        after = (rows[-1][1], rows[-1][0])


async def alines(qs: QuerySet[Detection]) -> AsyncIterator[str]:
    yield _writer.writerow(COLUMNS)
    after = None
    while rows := await sync_to_async(_chunk)(qs, after):
        yield "".join(_line(row) for row in rows)
        after = (rows[-1][1], rows[-1][0])


def csv_response(qs: QuerySet[Detection], asgi: bool, filename: str = "detections.csv") -> StreamingHttpResponse:
    response = StreamingHttpResponse(alines(qs) if asgi else lines(qs), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
