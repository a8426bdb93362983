"""Operator API for detections (CONTRACT section 3)."""

from rest_framework import serializers, viewsets

from .search import Query, search
from .serializers import DetectionSerializer


class DetectionFilter(serializers.Serializer):
    plate = serializers.CharField(required=False, allow_blank=True, max_length=32)
    device = serializers.CharField(required=False, allow_blank=True, max_length=64)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "until must be later than since."})
        return attrs


class DetectionViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = DetectionSerializer

    def get_queryset(self):
        if self.action != "list":
            return search(Query())
        params = DetectionFilter(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return search(Query(**params.validated_data))
