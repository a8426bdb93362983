"""Fill what migration 0002 added for detections stored before it: fuzzy-search text and passages."""

from django.core.management.base import BaseCommand
from django.db import transaction

from detections import passages
from detections.models import Detection
from detections.plates import search_text

BATCH = 2000


class Command(BaseCommand):
    help = "Give detections stored before passages and fuzzy search their search_text and passage, oldest first."

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=BATCH)

    def handle(self, *args, batch: int, **options):
        done = 0
        while rows := self._next(batch):
            with transaction.atomic():
                ids = passages.assign([passages.Read(d.device_id, d.plate_normalized, d.confidence, d.captured_at,
                                                     d.message_id) for d in rows])  # fmt: skip
                for d, passage_id in zip(rows, ids):
                    d.passage_id, d.search_text = passage_id, search_text(d.plate, _candidate_plates(d.candidates))
                Detection.objects.bulk_update(rows, ["passage", "search_text"])
            done += len(rows)
        self.stdout.write(f"backfilled {done} detection(s)")

    def _next(self, batch: int) -> list[Detection]:
        fields = ["id", "device_id", "plate", "plate_normalized", "confidence", "captured_at", "message_id", "candidates"]
        return list(Detection.objects.filter(passage=None).only(*fields).order_by("captured_at", "id")[:batch])


def _candidate_plates(candidates) -> list[str]:
    return [c["plate"] for c in candidates or [] if isinstance(c, dict) and isinstance(c.get("plate"), str) and c["plate"]]
