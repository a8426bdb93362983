from rest_framework import serializers

from .models import Detection


class DetectionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Detection
        fields = [
            "id", "message_id", "device", "plate", "plate_normalized", "confidence", "region", "candidates",
            "vehicle", "bbox", "direction", "speed_kph", "lane", "image", "captured_at", "received_at",
            "received_via", "protocol", "latency_ms", "extra",
        ]  # fmt: skip
