import uuid

from django.db import models

from devices.models import TRANSPORTS, Device


class Image(models.Model):
    """A plate or vehicle crop uploaded by a camera, referenced by detections as `image_ref`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(upload_to="images/%Y/%m/%d/")
    content_type = models.CharField(max_length=32)
    size = models.PositiveIntegerField()
    uploaded_at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=32, blank=True, help_text="plate, vehicle or scene, when the camera says.")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    thumbnail = models.FileField(upload_to="thumbnails/%Y/%m/%d/", blank=True)


class Passage(models.Model):
    """One vehicle passing one camera: reads of the same (or a nearly same) plate close together in time.

    Its id is stable once assigned, so alerts can be raised once per passage. Written by the ingest pipeline
    with nearly every read; as for detections, its device is not a database constraint (a check per row), and
    the (device, last_at) index serves lookups by device.
    """

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="passages", db_constraint=False,
                               db_index=False)  # fmt: skip
    plate_normalized = models.CharField(max_length=32, help_text="The best read's plate.")
    plate_folded = models.CharField(max_length=32, help_text="The best read's plate, OCR-confusable characters merged.")
    best_message_id = models.UUIDField(help_text="message_id of the read with the highest confidence.")
    best_confidence = models.FloatField()
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    read_count = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-last_at", "-id"]
        indexes = [models.Index(fields=["device", "-last_at"]), models.Index(fields=["-last_at"])]

    def __str__(self) -> str:
        return f"{self.plate_normalized} @ {self.device_id} ({self.read_count} reads)"


class Detection(models.Model):
    """One plate read. On PostgreSQL the table is partitioned by `captured_at` (detections/partitions.py).

    Written only by the ingest pipeline, in bulk. The message ledger
    (`transport.Message`) is what keeps a `message_id` unique, so this table
    carries no unique constraint of its own, and its references to devices,
    passages and images are not database constraints: the pipeline writes
    them from rows it has just read or written, and a constraint check per
    row would cost more than the rest of the insert.
    """

    message_id = models.UUIDField()
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="detections", db_constraint=False,
                               db_index=False)  # fmt: skip
    plate = models.CharField(max_length=32, help_text="As the camera sent it.")
    plate_normalized = models.CharField(max_length=32, help_text="Upper case, no spaces or separators.")
    confidence = models.FloatField()
    region = models.CharField(max_length=32, blank=True)
    candidates = models.JSONField(default=list, blank=True)
    vehicle = models.JSONField(default=dict, blank=True)
    bbox = models.JSONField(null=True, blank=True)
    direction = models.CharField(max_length=16, blank=True)
    speed_kph = models.FloatField(null=True, blank=True)
    lane = models.FloatField(null=True, blank=True)
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="detections",
                              db_constraint=False, db_index=False)  # fmt: skip
    captured_at = models.DateTimeField()
    received_at = models.DateTimeField()
    received_via = models.CharField(max_length=16, choices=TRANSPORTS)
    protocol = models.CharField(max_length=16, choices=TRANSPORTS, help_text="The transport the camera meant to use.")
    latency_ms = models.FloatField(null=True)
    extra = models.JSONField(default=dict, blank=True, help_text="Payload fields the server does not map, kept.")
    search_text = models.TextField(default="", blank=True, help_text="Folded plate and candidates (detections.plates.search_text).")
    passage = models.ForeignKey(Passage, null=True, blank=True, on_delete=models.DO_NOTHING, related_name="reads",
                                db_constraint=False)  # fmt: skip

    class Meta:
        ordering = ["-captured_at", "-id"]
        indexes = [
            # Pattern operators: exact plates and prefixes (LIKE 'AB1%') alike, whatever the database's collation.
            models.Index(fields=["plate_normalized", "-captured_at"], name="detections__plate_n_d25b7e_idx",
                         opclasses=["varchar_pattern_ops", "timestamptz_ops"]),
            models.Index(fields=["device", "-captured_at"]),
            models.Index(fields=["-captured_at"]),
            # Only reads that carry an image: image retention clears their link (SET_NULL) through it.
            models.Index(fields=["image"], name="detections_with_image", condition=models.Q(image__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.plate} @ {self.device_id}"


from .alert_models import Alert, Delivery, Rollup, Watchlist, WatchlistEntry, Webhook  # noqa: E402,F401  (issue 7)
