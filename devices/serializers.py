from rest_framework import serializers

from .models import Device


class DeviceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = [
            "id", "name", "site", "location", "active", "firmware", "last_seen_at", "last_transport",
            "desired_config_version", "require_signature",
        ]  # fmt: skip
        read_only_fields = ["last_seen_at", "last_transport", "firmware"]
