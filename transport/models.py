"""The pipeline's own records: the message ledger and refused input."""

from django.db import models

from devices.models import TRANSPORTS, Device


class Message(models.Model):
    """One row per envelope ever accepted, whatever its data type.

    Its primary key is the camera's `message_id`, so the database itself
    decides what is a duplicate (`INSERT ... ON CONFLICT DO NOTHING`).
    """

    message_id = models.UUIDField(primary_key=True)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="messages")
    data_type = models.CharField(max_length=16)
    received_via = models.CharField(max_length=16, choices=TRANSPORTS)
    protocol = models.CharField(max_length=16, choices=TRANSPORTS)
    sequence = models.BigIntegerField(null=True)
    sent_at = models.DateTimeField()
    received_at = models.DateTimeField()
    latency_ms = models.FloatField(null=True)

    class Meta:
        indexes = [
            models.Index(fields=["device", "sequence"]),
            models.Index(fields=["received_at"]),
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
