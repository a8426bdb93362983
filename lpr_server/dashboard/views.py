"""Dashboard pages: each view makes one call into the dashboard's domain modules and renders it."""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.handlers.asgi import ASGIRequest
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from detections import export
from detections.alert_models import Alert
from detections.search import InvalidSearch
from devices import commands
from devices.models import Device

from . import alerting, analytics, finder, fleet, overview
from .access import operator_required


@operator_required
def overview_page(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/overview.html", {"page": overview.overview(), "nav": "overview"})


@operator_required
def devices_page(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/devices.html", {"rows": fleet.device_rows(with_drift=True), "nav": "devices"})


@operator_required
def device_page(request: HttpRequest, device_id: str) -> HttpResponse:
    page = fleet.device_page(get_object_or_404(Device, pk=device_id), request.user)
    return render(request, "dashboard/device.html", {"page": page, "nav": "devices"})


@operator_required
@require_POST
def send_command(request: HttpRequest, device_id: str) -> HttpResponse:
    if not fleet.can_send_commands(request.user):
        messages.error(request, "Sending commands needs staff or the operators group.")
        return redirect("dashboard:device", device_id=device_id)
    try:
        params = json.loads(request.POST.get("params") or "{}")
        with transaction.atomic():
            command = commands.send(device_id, request.POST.get("action", "").strip(), params,
                                    int(request.POST.get("ttl_s") or commands.DEFAULT_TTL_S))  # fmt: skip
    except (ValueError, commands.CommandError) as exc:
        messages.error(request, f"Not sent: {getattr(exc, 'detail', exc)}")
    else:
        messages.success(request, f"Command {command.action} queued ({command.id}).")
    return redirect("dashboard:device", device_id=device_id)


@operator_required
def detections_page(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/detections.html", {"page": finder.find(request.GET), "nav": "detections"})


@operator_required
def detections_csv(request: HttpRequest) -> HttpResponse:
    try:
        reads = finder.export_reads(request.GET)
    except InvalidSearch as exc:
        return HttpResponseBadRequest(f"{exc.field}: {exc.detail}", content_type="text/plain")
    return export.csv_response(reads, asgi=isinstance(request, ASGIRequest))


@operator_required
def alerts_page(request: HttpRequest) -> HttpResponse:
    page = alerting.alerts_page(request.GET.get("show", "open"))
    return render(request, "dashboard/alerts.html", {"page": page, "nav": "alerts"})


@operator_required
@require_POST
def acknowledge_alert(request: HttpRequest, alert_id: int) -> HttpResponse:
    try:
        alert, done = alerting.acknowledge(alert_id, request.user, request.POST.get("comment", ""))
    except Alert.DoesNotExist:
        raise Http404(f"No alert {alert_id}.") from None
    by = alert.acknowledged_by.get_username() if alert.acknowledged_by else ""
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"id": alert.id, "acknowledged": done, "acknowledged_by": by,
                             "acknowledged_at": alert.acknowledged_at.isoformat()})  # fmt: skip
    if not done:
        messages.info(request, f"Alert {alert.id} was already acknowledged by {by}.")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        target = "dashboard:alerts"
    return redirect(target)


@operator_required
def analytics_page(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/analytics.html", {"page": analytics.analytics(), "nav": "analytics"})
