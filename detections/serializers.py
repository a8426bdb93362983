from django.urls import reverse
from rest_framework import serializers

from .models import Detection, Passage
from .search import MATCHES


class DetectionSerializer(serializers.ModelSerializer):
    image_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Detection
        fields = [
            "id", "message_id", "device", "plate", "plate_normalized", "confidence", "region", "candidates",
            "vehicle", "bbox", "direction", "speed_kph", "lane", "image", "image_url", "thumbnail_url", "passage",
            "captured_at", "received_at", "received_via", "protocol", "latency_ms", "extra",
        ]  # fmt: skip

    def get_image_url(self, obj: Detection) -> str | None:
        return reverse("image", args=[obj.image_id]) if obj.image_id else None

    def get_thumbnail_url(self, obj: Detection) -> str | None:
        return reverse("image-thumbnail", args=[obj.image_id]) if obj.image_id else None


class PassageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Passage
        fields = [
            "id", "device", "plate_normalized", "best_message_id", "best_confidence", "first_at", "last_at",
            "read_count",
        ]  # fmt: skip


class DetectionFilter(serializers.Serializer):
    """Query parameters of `GET /api/v1/detections/`."""

    plate = serializers.CharField(required=False, allow_blank=True, max_length=32)
    match = serializers.ChoiceField(MATCHES, required=False, default="exact")
    distance = serializers.IntegerField(required=False, min_value=0, max_value=2)
    device = serializers.CharField(required=False, allow_blank=True, max_length=64)
    site = serializers.CharField(required=False, allow_blank=True, max_length=200)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    min_confidence = serializers.FloatField(required=False, min_value=0, max_value=1)
    region = serializers.CharField(required=False, allow_blank=True, max_length=32)
    direction = serializers.CharField(required=False, allow_blank=True, max_length=16)
    vehicle_type = serializers.CharField(required=False, allow_blank=True, max_length=64)
    make = serializers.CharField(required=False, allow_blank=True, max_length=64)
    model = serializers.CharField(required=False, allow_blank=True, max_length=64)
    color = serializers.CharField(required=False, allow_blank=True, max_length=64)
    view = serializers.ChoiceField(["reads", "passages"], required=False, default="reads")

    def validate(self, attrs):
        if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "until must be later than since."})
        return attrs
