import uuid

from django.core.validators import RegexValidator
from django.db import models

TRANSPORTS = [("websocket", "WebSocket"), ("socketio", "Socket.IO"), ("rest", "REST"), ("mqtt", "MQTT")]

PROFILES = [
    ("urban", "Urban: WebSocket, then REST, then MQTT"),
    ("suburban", "Suburban: REST, then WebSocket, then MQTT"),
    ("rural", "Rural: MQTT, then REST, then the camera's local store"),
    ("mobile", "Mobile: adaptive, follows the score"),
]

device_id_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    "Letters, digits, '_', '.' and '-' only (it is part of MQTT topics), at most 64 characters.",
)


class Device(models.Model):
    id = models.CharField(primary_key=True, max_length=64, validators=[device_id_validator])
    name = models.CharField(max_length=200, blank=True)
    site = models.CharField(max_length=200, blank=True, db_index=True)
    location = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)

    # Credentials (see devices/credentials.py): the key itself is never stored in clear.
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    key_encrypted = models.TextField(editable=False, help_text="Fernet-encrypted key, for request signatures.")
    key_version = models.PositiveIntegerField(default=1, editable=False)
    payload_key_encrypted = models.TextField(editable=False)
    require_signature = models.BooleanField(default=False)
    rate_limit_per_s = models.FloatField(null=True, blank=True, help_text="Messages/s; empty uses the server default.")

    desired_config_version = models.PositiveIntegerField(default=0)
    desired_config = models.JSONField(default=dict, blank=True)

    last_seen_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_transport = models.CharField(max_length=16, choices=TRANSPORTS, blank=True)
    firmware = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # Presence inputs: the server's own ping round trip, and the MQTT status topic (retained, last will).
    measured_latency_ms = models.FloatField(null=True, blank=True)
    measured_latency_at = models.DateTimeField(null=True, blank=True)
    mqtt_status = models.CharField(max_length=8, blank=True, choices=[("online", "online"), ("offline", "offline")])
    mqtt_status_at = models.DateTimeField(null=True, blank=True)

    # Derived by devices/online.py and devices/connectivity.py; stored so lists and changes are cheap.
    online = models.BooleanField(default=False)
    presence_changed_at = models.DateTimeField(null=True, blank=True)
    profile = models.CharField(max_length=16, choices=PROFILES, default="urban")
    recommended_protocol = models.CharField(max_length=16, blank=True)
    connectivity_score = models.FloatField(null=True, blank=True)
    observed_transport = models.CharField(max_length=16, blank=True, help_text="Last transport the switch watcher saw.")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.id} ({self.name})" if self.name else self.id


class HealthLog(models.Model):
    # Found by the (device, reported_at) index; retention finds old rows by a block-range index on reported_at
    # (PostgreSQL, devices/migrations/0005).
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="health_logs", db_index=False)
    message_id = models.UUIDField(unique=True)
    reported_at = models.DateTimeField()
    received_at = models.DateTimeField()
    received_via = models.CharField(max_length=16, choices=TRANSPORTS)
    cpu_percent = models.FloatField(null=True)
    memory_percent = models.FloatField(null=True)
    temperature_c = models.FloatField(null=True)
    disk_percent = models.FloatField(null=True)
    uptime_s = models.FloatField(null=True)
    fps = models.FloatField(null=True)
    queue_depth = models.IntegerField(null=True)
    firmware = models.CharField(max_length=100, blank=True)
    latency_ms = models.FloatField(null=True)
    bandwidth_kbps = models.FloatField(null=True)
    packet_loss = models.FloatField(null=True)
    uptime_percent = models.FloatField(null=True)
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["device", "-reported_at"])]
        ordering = ["-reported_at"]


class ReportedConfig(models.Model):
    """Every configuration version a device reported running, kept as history."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="reported_configs", db_index=False)
    message_id = models.UUIDField(unique=True)
    version = models.PositiveIntegerField()
    values = models.JSONField(default=dict)
    reported_at = models.DateTimeField()
    received_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["device", "-version"])]
        ordering = ["-version", "-reported_at"]


class Command(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued"
        SENT = "sent"
        RECEIVED = "received"
        DONE = "done"
        FAILED = "failed"
        EXPIRED = "expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="commands")
    action = models.CharField(max_length=64)
    params = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["device", "state", "created_at"])]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} → {self.device_id} ({self.state})"


class CommandTransition(models.Model):
    command = models.ForeignKey(Command, on_delete=models.CASCADE, related_name="transitions")
    state = models.CharField(max_length=16, choices=Command.State.choices)
    at = models.DateTimeField()
    transport = models.CharField(max_length=16, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]


class ProtocolSwitch(models.Model):
    """A change of transport the server observed for a device, with why."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="protocol_switches")
    from_transport = models.CharField(max_length=16, blank=True)
    to_transport = models.CharField(max_length=16)
    reason = models.CharField(max_length=200, blank=True)
    at = models.DateTimeField(db_index=True)
    source = models.CharField(max_length=8, default="server", choices=[("server", "server"), ("device", "device")])
    score = models.FloatField(null=True, blank=True)
    recommended = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ["-at"]
        constraints = [
            models.UniqueConstraint(
                fields=["device", "source", "from_transport", "to_transport", "at"], name="protocol_switch_once"
            )
        ]


class PresenceChange(models.Model):
    """A device went online or offline, across all its transports (devices/online.py)."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="presence_changes")
    online = models.BooleanField()
    at = models.DateTimeField()
    transport = models.CharField(max_length=16, blank=True)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["device", "-at"])]
