"""Operator API for watchlists, alerts, webhooks and traffic statistics.

Staff manage watchlists and webhooks; operators (devices/permissions.py) read
watchlists and alerts and acknowledge alerts. Statistics read rollups only.
"""

from __future__ import annotations

import io

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import decorators, parsers, serializers, status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.generics import ListAPIView
from rest_framework.response import Response

from devices.permissions import IsStaff, StaffWrites
from lpr_server.parsers import MultiPartParser

from . import alerts, notify, watchlists
from .alert_models import Alert, Rollup, Watchlist, WatchlistEntry, Webhook


class CSVParser(parsers.BaseParser):
    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        return stream.read() if stream is not None else b""


class EntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = WatchlistEntry
        fields = ["id", "kind", "value", "match", "device", "site", "active_from", "active_until", "priority", "note"]

    def validate(self, data):
        entry = WatchlistEntry(**{k: v for k, v in data.items()})
        try:
            watchlists.check_entry(entry)
        except watchlists.InvalidEntry as exc:
            raise serializers.ValidationError({exc.field: exc.detail}) from None
        data["value"] = entry.value
        return data


class WatchlistSerializer(serializers.ModelSerializer):
    entries = serializers.IntegerField(source="entries.count", read_only=True)

    class Meta:
        model = Watchlist
        fields = ["id", "name", "description", "active", "notify_emails", "entries", "created_at", "updated_at"]


class WatchlistViewSet(viewsets.ModelViewSet):
    """`/api/v1/watchlists/`; entries under `<id>/entries/`, CSV under `<id>/import/` and `<id>/export/`."""

    queryset = Watchlist.objects.all()
    serializer_class = WatchlistSerializer
    permission_classes = [StaffWrites]

    @extend_schema(methods=["GET"], responses=EntrySerializer(many=True))
    @extend_schema(methods=["POST"], request=EntrySerializer, responses={201: EntrySerializer})
    @decorators.action(detail=True, methods=["get", "post"], serializer_class=EntrySerializer)
    def entries(self, request, pk=None):
        watchlist = self.get_object()
        if request.method == "POST":
            serializer = EntrySerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            serializer.save(watchlist=watchlist)
            return Response(serializer.data, status=status.HTTP_201_CREATED)
        page = self.paginate_queryset(watchlist.entries.order_by("id"))
        return self.get_paginated_response(EntrySerializer(page, many=True).data)

    @extend_schema(responses={204: None})
    @decorators.action(detail=True, methods=["delete"], url_path=r"entries/(?P<entry_id>\d+)")
    def delete_entry(self, request, pk=None, entry_id=None):
        deleted, _ = self.get_object().entries.filter(id=entry_id).delete()
        if not deleted:
            raise NotFound(f"No entry {entry_id} in this watchlist.")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request={"text/csv": OpenApiTypes.STR,
                            "multipart/form-data": inline_serializer("WatchlistUpload", {"file": serializers.FileField()})},
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    @decorators.action(detail=True, methods=["post"], url_path="import",
                       parser_classes=[CSVParser, MultiPartParser])  # fmt: skip
    def import_csv(self, request, pk=None):
        """Body: the CSV (text/csv), or a multipart `file`. `?replace=true` replaces the list's entries."""
        watchlist = self.get_object()
        data = request.data
        upload = None if isinstance(data, bytes) else data.get("file")
        if isinstance(upload, str):  # a `file` form field sent as text rather than as a file part
            upload = None if not upload else io.BytesIO(upload.encode())
        raw = data if isinstance(data, bytes) else upload.read() if upload else b""
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise serializers.ValidationError({"file": "The CSV must be UTF-8."}) from None
        replace = request.query_params.get("replace") in ("1", "true", "yes")
        report = watchlists.import_csv(watchlist, text, replace=replace)
        return Response(report.as_dict(), status=status.HTTP_200_OK)

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    @decorators.action(detail=True, methods=["get"], url_path="export")
    def export_csv(self, request, pk=None):
        watchlist = self.get_object()
        response = StreamingHttpResponse(watchlists.export_csv(watchlist), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="watchlist-{watchlist.id}.csv"'
        return response


class AlertSerializer(serializers.ModelSerializer):
    watchlist_name = serializers.CharField(source="watchlist.name", read_only=True)
    acknowledged_by = serializers.CharField(source="acknowledged_by.username", read_only=True, default=None, allow_null=True)

    class Meta:
        model = Alert
        fields = ["id", "watchlist", "watchlist_name", "entry", "passage", "detection", "device", "plate", "matched",
                  "priority", "note", "captured_at", "raised_at", "acknowledged_at", "acknowledged_by", "ack_comment"]


class AlertViewSet(viewsets.ReadOnlyModelViewSet):
    """`/api/v1/alerts/?acknowledged=false&watchlist=&device=`; `POST <id>/ack/ {"comment": ...}`."""

    serializer_class = AlertSerializer

    def get_queryset(self):
        qs = Alert.objects.select_related("watchlist", "acknowledged_by")
        params = self.request.query_params
        if params.get("acknowledged") in ("true", "false"):
            qs = qs.filter(acknowledged_at__isnull=params["acknowledged"] == "false")
        for name in ("watchlist", "device"):
            if params.get(name):
                qs = qs.filter(**{f"{name}_id": params[name]})
        return qs

    @extend_schema(request=inline_serializer("AlertAck", {"comment": serializers.CharField(required=False)}),
                   responses=AlertSerializer)  # 409 (already acknowledged): the error body, with the alert
    @decorators.action(detail=True, methods=["post"])
    def ack(self, request, pk=None):
        self.get_object()  # 404 for an unknown alert
        try:
            alert = alerts.acknowledge(int(pk), request.user, str(request.data.get("comment", "")))
        except alerts.AlreadyAcknowledged as exc:
            return Response({"error": "conflict", "detail": "The alert was already acknowledged.",
                             "alert": AlertSerializer(exc.args[0]).data}, status=status.HTTP_409_CONFLICT)  # fmt: skip
        return Response(AlertSerializer(alert).data)


class WebhookSerializer(serializers.ModelSerializer):
    class Meta:
        model = Webhook
        fields = ["id", "name", "url", "secret", "watchlists", "active", "failed_deliveries", "disabled_at",
                  "disabled_reason"]  # fmt: skip
        read_only_fields = ["failed_deliveries", "disabled_at", "disabled_reason"]
        extra_kwargs = {"secret": {"write_only": True}, "url": {"validators": []}}

    def validate_url(self, value: str) -> str:
        try:
            return notify.check_webhook_url(value)
        except notify.InvalidWebhookURL as exc:
            raise serializers.ValidationError(str(exc)) from None

    def update(self, instance, validated_data):
        if validated_data.get("active") and not instance.active:  # re-enabled by staff: a fresh start
            validated_data.update(failed_deliveries=0, disabled_at=None, disabled_reason="")
        return super().update(instance, validated_data)


class WebhookViewSet(viewsets.ModelViewSet):
    queryset = Webhook.objects.order_by("id")
    serializer_class = WebhookSerializer
    permission_classes = [IsStaff]


class RollupSerializer(serializers.ModelSerializer):
    class Meta:
        model = Rollup
        fields = ["period", "start", "device_id", "protocol", "detections", "unique_plates", "accepted", "rejected",
                  "latency_p50_ms", "latency_p95_ms", "computed_at"]  # fmt: skip


class TrafficFilter(serializers.Serializer):
    period = serializers.ChoiceField(["hour", "day"], default="hour")
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    device = serializers.CharField(required=False)
    protocol = serializers.CharField(required=False)


class TrafficStatsView(ListAPIView):
    """`GET /api/v1/stats/traffic/?period=hour|day&since=&until=&device=&protocol=`: rollup rows, newest first."""

    serializer_class = RollupSerializer

    def get_queryset(self):
        params = TrafficFilter(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        p = params.validated_data
        qs = Rollup.objects.filter(period=p["period"]).order_by("-start", "device_id", "protocol")
        filters = {"start__gte": p.get("since"), "start__lt": p.get("until"), "device_id": p.get("device"),
                   "protocol": p.get("protocol")}  # fmt: skip
        return qs.filter(**{k: v for k, v in filters.items() if v is not None})
