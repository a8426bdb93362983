from rest_framework import serializers

from . import commands
from .configuration import MAX_VERSION
from .models import TRANSPORTS, Command, CommandTransition, Device, HealthLog, PresenceChange, ProtocolSwitch


class DeviceSerializer(serializers.ModelSerializer):
    config_drift = serializers.SerializerMethodField()
    score = serializers.FloatField(source="connectivity_score", read_only=True, allow_null=True)
    last_transport = serializers.ChoiceField(TRANSPORTS, allow_blank=True, read_only=True)  # "" before any message

    class Meta:
        model = Device
        fields = [
            "id", "name", "site", "location", "active", "firmware", "last_seen_at", "last_transport",
            "online", "presence_changed_at", "mqtt_status", "measured_latency_ms", "profile",
            "recommended_protocol", "score", "desired_config_version", "config_drift", "require_signature",
        ]  # fmt: skip
        read_only_fields = ["last_seen_at", "last_transport", "firmware"]

    def get_config_drift(self, device: Device) -> dict:
        drifts = self.context.get("drift") or {}
        if device.id in drifts:
            return drifts[device.id].as_dict()
        from .configuration import drift

        return drift(device).as_dict()


class TransitionSerializer(serializers.ModelSerializer):
    class Meta:
        model = CommandTransition
        fields = ["state", "at", "transport", "detail"]


class CommandSerializer(serializers.ModelSerializer):
    device = serializers.CharField(source="device_id", read_only=True)
    history = TransitionSerializer(source="transitions", many=True, read_only=True)

    class Meta:
        model = Command
        fields = ["id", "device", "action", "params", "state", "created_at", "expires_at", "attempts",
                  "last_sent_at", "result", "error", "history"]  # fmt: skip


class CommandRequestSerializer(serializers.Serializer):
    action = serializers.CharField(max_length=64)
    params = serializers.JSONField(required=False, default=dict)
    ttl_s = serializers.JSONField(required=False, default=commands.DEFAULT_TTL_S)

    def validate(self, data):
        try:
            commands.check_request(data["action"], data["params"], data["ttl_s"])
        except commands.CommandError as exc:
            raise serializers.ValidationError({exc.field or "action": [exc.detail]})
        return data


class DesiredConfigSerializer(serializers.Serializer):
    values = serializers.JSONField()
    version = serializers.IntegerField(required=False, min_value=1, max_value=MAX_VERSION)
    profile = serializers.ChoiceField(choices=Device._meta.get_field("profile").choices, required=False)


class HealthSerializer(serializers.ModelSerializer):
    device = serializers.CharField(source="device_id", read_only=True)

    class Meta:
        model = HealthLog
        exclude = ["id"]


class PresenceChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = PresenceChange
        fields = ["online", "at", "transport", "reason"]


class ProtocolSwitchSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProtocolSwitch
        fields = ["from_transport", "to_transport", "reason", "at", "source", "score", "recommended"]
