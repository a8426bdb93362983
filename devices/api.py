"""Operator API for devices (CONTRACT section 3)."""

from rest_framework import viewsets

from .models import Device
from .serializers import DeviceSerializer


class DeviceViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Device.objects.all()
    serializer_class = DeviceSerializer
