"""The detections search page: the operator API's filters (detections.serializers.DetectionFilter) read from a
form, answered by detections.search, one page at a time.

Pages are fetched with LIMIT page_size + 1 and OFFSET, never counted: a count
over millions of matching reads is exactly the scan this page must not do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import QueryDict

from detections import search
from detections.models import Detection, Passage
from detections.plates import CONFUSABLE_GROUPS
from detections.serializers import DetectionFilter
from devices.models import Device

PAGE_SIZE = 50
MAX_PAGE = 200  # deep offsets get slow; narrow the search instead


@dataclass
class SearchPage:
    params: dict[str, Any]
    query_string: str = ""
    view: str = "reads"
    rows: list = field(default_factory=list)
    page: int = 1
    has_next: bool = False
    errors: dict[str, str] = field(default_factory=dict)
    searched: bool = False
    devices: list[tuple[str, str]] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)
    matches: tuple[str, ...] = search.MATCHES
    confusables: tuple[str, ...] = CONFUSABLE_GROUPS


def parse(data: QueryDict) -> tuple[search.Query | None, str, dict[str, str]]:
    """The form's values as a search Query and the view (reads or passages), or the errors by field."""
    given = {k: v for k, v in data.items() if v != "" and k in DetectionFilter().fields}
    form = DetectionFilter(data=given)
    if not form.is_valid():
        return None, "reads", {k: " ".join(str(m) for m in v) for k, v in form.errors.items()}
    values = dict(form.validated_data)
    view = values.pop("view", "reads")
    return search.Query(**values), view, {}


def find(data: QueryDict) -> SearchPage:
    """One page of reads or passages for the search form's values (an empty form: the newest reads)."""
    rest = data.copy()
    rest.pop("page", None)
    page = SearchPage(params=rest.dict(), query_string=rest.urlencode(), page=_page_number(data.get("page")))
    page.devices = list(Device.objects.order_by("id").values_list("id", "name"))
    page.sites = sorted({s for s in Device.objects.exclude(site="").values_list("site", flat=True)})
    query, page.view, page.errors = parse(data)
    if query is None:
        return page
    try:
        qs = search.search_passages(query) if page.view == "passages" else search.search(query)
    except search.InvalidSearch as exc:
        page.errors = {exc.field: exc.detail}
        return page
    qs = qs.select_related("device") if page.view == "passages" else qs.select_related("device", "passage")
    start = (page.page - 1) * PAGE_SIZE
    rows = list(qs[start : start + PAGE_SIZE + 1])
    page.rows, page.has_next, page.searched = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE and page.page < MAX_PAGE, True
    if page.view == "passages":
        _attach_best_reads(page.rows)
    return page


def export_reads(data: QueryDict):
    """The reads the form selects, for the streamed CSV (passages export their reads too)."""
    query, _, errors = parse(data)
    if query is None:
        raise search.InvalidSearch(*next(iter(errors.items())))
    return search.search(query)


def _attach_best_reads(passages: list[Passage]) -> None:
    """Each passage's best read (its thumbnail and plate as sent), in one query (the passages' time span
    bounds it to the partitions that hold them)."""
    if not passages:
        return
    best = {d.message_id: d for d in Detection.objects.filter(
        message_id__in=[p.best_message_id for p in passages],
        captured_at__gte=min(p.first_at for p in passages), captured_at__lte=max(p.last_at for p in passages),
    )}  # fmt: skip
    for p in passages:
        p.best = best.get(p.best_message_id)


def _page_number(text: str | None) -> int:
    try:
        return min(max(int(text or 1), 1), MAX_PAGE)
    except ValueError:
        return 1
