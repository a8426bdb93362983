"""The pipeline's own records: the message ledger and refused input."""

from django.db import models

from devices.models import TRANSPORTS, Device


class Message(models.Model):
    """One row per envelope ever accepted, whatever its data type.

    Its primary key is the camera's `message_id`, so the database itself
    decides what is a duplicate (`INSERT ... ON CONFLICT DO NOTHING`).
    """

    message_id = models.UUIDField(primary_key=True)
    # The pipeline writes rows for devices it has just authenticated; a constraint check per row is not worth it.
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="messages", db_constraint=False,
                               db_index=False)  # fmt: skip
    data_type = models.CharField(max_length=16)
    received_via = models.CharField(max_length=16, choices=TRANSPORTS)
    protocol = models.CharField(max_length=16, choices=TRANSPORTS)
    sequence = models.BigIntegerField(null=True)
    sent_at = models.DateTimeField()
    received_at = models.DateTimeField()
    latency_ms = models.FloatField(null=True)

    class Meta:
        indexes = [
            # Per-device traffic figures (devices.monitor). Time windows over all devices use block-range (BRIN)
            # indexes on received_at and sent_at, PostgreSQL only (migration 0002): the ledger is appended in
            # time order, so they cost almost nothing to keep.
            models.Index(fields=["device", "received_at"]),
        ]


class RejectedMessage(models.Model):
    """Input the server refused, with why, so an operator can see it."""

    EXCERPT_CHARS = 1024

    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    claimed_device_id = models.CharField(max_length=64, blank=True)
    transport = models.CharField(max_length=16, choices=TRANSPORTS)
    error = models.CharField(max_length=32)
    detail = models.TextField(blank=True)
    message_id = models.CharField(max_length=64, blank=True)
    excerpt = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received_at"]
