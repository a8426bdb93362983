"""Operator API for devices (CONTRACT section 3): devices, commands, health, communication stats.

Operators (devices/permissions.py) read; staff, and users in the `operators`
group (who hold `devices.add_command`), send commands; only staff change
configurations. Signed-in users who are not operators get 403.
Devices are created and deleted in the admin, by staff.
"""

from django.db import transaction
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from . import commands, configuration, monitor
from .models import Command, Device, HealthLog
from .permissions import CanSendCommands, IsStaff
from .serializers import (
    CommandRequestSerializer, CommandSerializer, DesiredConfigSerializer, DeviceSerializer, HealthSerializer,
    PresenceChangeSerializer, ProtocolSwitchSerializer,
)  # fmt: skip


class _ContractNotFound:
    """Raise DRF's NotFound, not Django's Http404, which the error handler would report as `invalid`."""

    def get_object(self):
        try:
            return super().get_object()
        except Http404:
            raise NotFound(f"No {self.queryset.model._meta.verbose_name} {self.kwargs.get('pk')!r}.")


class DeviceViewSet(_ContractNotFound, viewsets.ReadOnlyModelViewSet):
    queryset = Device.objects.all()
    serializer_class = DeviceSerializer

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        context = {**self.get_serializer_context(), "drift": configuration.drift_for(page)}
        return self.get_paginated_response(DeviceSerializer(page, many=True, context=context).data)

    @extend_schema(methods=["GET"], responses=CommandSerializer(many=True))
    @extend_schema(methods=["POST"], request=CommandRequestSerializer, responses={201: CommandSerializer})
    @action(detail=True, methods=["get", "post"], url_path="commands",
            permission_classes=[CanSendCommands])  # fmt: skip
    def commands(self, request, pk=None):
        device = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(device.commands.prefetch_related("transitions"))
            return self.get_paginated_response(CommandSerializer(page, many=True).data)
        body = CommandRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with transaction.atomic():
            command = commands.send(device.id, **body.validated_data)
        command = Command.objects.prefetch_related("transitions").get(pk=command.pk)
        return Response(CommandSerializer(command).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=DesiredConfigSerializer, responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["post"], url_path="config", permission_classes=[IsStaff])
    def config(self, request, pk=None):
        device = self.get_object()
        body = DesiredConfigSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            configuration.set_desired(device, **body.validated_data)
        except configuration.ConfigError as exc:
            raise ValidationError({exc.field: [exc.detail]})
        return Response({**configuration.desired(device), **configuration.drift(device).as_dict()})

    @extend_schema(responses=inline_serializer("Presence", {
        "online": serializers.BooleanField(), "since": serializers.DateTimeField(allow_null=True),
        "history": PresenceChangeSerializer(many=True), "protocol_switches": ProtocolSwitchSerializer(many=True)}))  # fmt: skip
    @action(detail=True, methods=["get"])
    def presence(self, request, pk=None):
        device = self.get_object()
        return Response({
            "online": device.online, "since": device.presence_changed_at,
            "history": PresenceChangeSerializer(device.presence_changes.all()[:50], many=True).data,
            "protocol_switches": ProtocolSwitchSerializer(device.protocol_switches.all()[:50], many=True).data,
        })  # fmt: skip


class CommandViewSet(_ContractNotFound, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Command.objects.prefetch_related("transitions")
    serializer_class = CommandSerializer


class HealthViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = HealthSerializer

    def get_queryset(self):
        rows = HealthLog.objects.order_by("-reported_at")
        device = self.request.query_params.get("device")
        if device:
            if not Device.objects.filter(pk=device).exists():
                raise NotFound(f"No device {device!r}.")
            rows = rows.filter(device_id=device)
        return rows


_WINDOW_PARAM = OpenApiParameter("window", str, description="e.g. 15m, 1h, 2d (at most 31d); default 1h")


class ProtocolStats(APIView):
    """`?window=1h`: per protocol, share of traffic, success rate, average and p95 latency."""

    @extend_schema(parameters=[_WINDOW_PARAM], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        window = _window(request)
        figures = monitor.by_protocol(window)
        return Response({
            "window_s": int(window.total_seconds()),
            "protocols": {via: vars(f) for via, f in sorted(figures.items())},
        })  # fmt: skip


class DeviceStats(APIView):
    """`?window=1h&device=<id>` (repeatable): the same per device, plus sequence gaps and repeats."""

    @extend_schema(parameters=[_WINDOW_PARAM, OpenApiParameter("device", str, many=True)], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        window = _window(request)
        ids = request.query_params.getlist("device") or None
        return Response({"window_s": int(window.total_seconds()), "devices": monitor.by_device(window, ids)})


def _window(request):
    try:
        return monitor.parse_window(request.query_params.get("window"))
    except monitor.WindowError as exc:
        raise ValidationError({"window": [str(exc)]})
