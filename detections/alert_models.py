"""Watchlists, alerts, their deliveries and the analytics rollups (imported by detections/models.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from devices.models import Device
from devices.sealed import SealedTextField

MATCH_MODES = [("exact", "exact"), ("lenient", "lenient (OCR-confusable characters, edit distance, candidates)")]
ENTRY_KINDS = [("plate", "plate"), ("pattern", "pattern (regular expression on the normalised plate)")]
CHANNELS = [("dashboard", "dashboard"), ("webhook", "webhook"), ("email", "e-mail")]
DELIVERY_STATES = [("pending", "pending"), ("delivered", "delivered"), ("failed", "failed")]
PERIODS = [("hour", "hour"), ("day", "day")]


class Watchlist(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)
    notify_emails = models.TextField(
        blank=True, help_text="Addresses e-mailed on each alert, comma or newline separated."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def email_addresses(self) -> list[str]:
        return [a.strip() for a in self.notify_emails.replace("\n", ",").split(",") if a.strip()]


class WatchlistEntry(models.Model):
    watchlist = models.ForeignKey(Watchlist, on_delete=models.CASCADE, related_name="entries")
    kind = models.CharField(max_length=8, choices=ENTRY_KINDS, default="plate")
    value = models.CharField(max_length=200, help_text="The plate (stored normalised) or the regular expression.")
    match = models.CharField(max_length=8, choices=MATCH_MODES, default="exact")
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    site = models.CharField(max_length=200, blank=True)
    active_from = models.DateTimeField(null=True, blank=True)
    active_until = models.DateTimeField(null=True, blank=True)
    priority = models.PositiveSmallIntegerField(default=1, help_text="Higher is more urgent.")
    note = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["watchlist", "value"]
        indexes = [models.Index(fields=["watchlist", "value"])]

    def __str__(self) -> str:
        return f"{self.value} ({self.match})"


class Alert(models.Model):
    """A watchlist hit: one per passage and watchlist (the highest-priority entry that matched)."""

    watchlist = models.ForeignKey(Watchlist, on_delete=models.CASCADE, related_name="alerts")
    entry = models.ForeignKey(WatchlistEntry, null=True, on_delete=models.SET_NULL, related_name="alerts")
    passage = models.ForeignKey("detections.Passage", null=True, on_delete=models.SET_NULL, related_name="alerts")
    # Detections are partitioned (no unique id alone to reference) and dropped by partition: retention clears
    # this link itself (detections.retention), so it is no database constraint.
    detection = models.ForeignKey("detections.Detection", null=True, on_delete=models.DO_NOTHING, related_name="alerts",
                                  db_constraint=False)  # fmt: skip
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="alerts")
    plate = models.CharField(max_length=32, help_text="The plate as read.")
    matched = models.CharField(max_length=32, help_text="The read text that matched (the plate or a candidate).")
    priority = models.PositiveSmallIntegerField(default=1)
    note = models.TextField(blank=True)
    captured_at = models.DateTimeField()
    raised_at = models.DateTimeField(auto_now_add=True, db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    ack_comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-raised_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["watchlist", "passage"], name="alert_once_per_passage"),
            models.UniqueConstraint(fields=["watchlist", "detection"], condition=Q(passage=None),
                                    name="alert_once_per_unpassaged_read"),
        ]  # fmt: skip

    def __str__(self) -> str:
        return f"{self.plate} @ {self.device_id} on {self.watchlist_id}"


class Webhook(models.Model):
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    # Sealed in the database: the server signs with it, so it must be kept, but a dump must not reveal it.
    secret = SealedTextField(max_length=200, help_text="HMAC-SHA256 key of the X-LPR-Signature header.")
    watchlists = models.ManyToManyField(Watchlist, blank=True, related_name="webhooks", help_text="None: all.")
    active = models.BooleanField(default=True)
    failed_deliveries = models.PositiveIntegerField(default=0, help_text="Consecutive deliveries that gave up.")
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name


class Delivery(models.Model):
    """One alert sent on one channel (to one webhook or mailbox): the delivery log."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=CHANNELS)
    webhook = models.ForeignKey(Webhook, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    target = models.CharField(max_length=500, blank=True, help_text="The webhook id or the e-mail addresses.")
    state = models.CharField(max_length=10, choices=DELIVERY_STATES, default="pending")
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel", "target"], name="delivery_once_per_target"),
        ]


class Rollup(models.Model):
    """Traffic of one device over one protocol in one hour or day; recomputed whole, so re-running is harmless."""

    period = models.CharField(max_length=4, choices=PERIODS)
    start = models.DateTimeField()
    device_id = models.CharField(max_length=64, help_text="'' for refused input no device could be named for.")
    protocol = models.CharField(max_length=16)
    detections = models.PositiveIntegerField(default=0)
    unique_plates = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0, help_text="Messages of any data type accepted (ledger).")
    rejected = models.PositiveIntegerField(default=0)
    latency_p50_ms = models.FloatField(null=True)
    latency_p95_ms = models.FloatField(null=True)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-start", "device_id", "protocol"]
        constraints = [
            models.UniqueConstraint(fields=["period", "start", "device_id", "protocol"], name="rollup_one_row_per_key"),
        ]
        indexes = [models.Index(fields=["period", "start"])]
