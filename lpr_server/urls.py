from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from detections import views as detection_views
from detections.alert_api import AlertViewSet, TrafficStatsView, WatchlistViewSet, WebhookViewSet
from detections.api import DetectionViewSet
from devices.api import CommandViewSet, DeviceStats, DeviceViewSet, HealthViewSet, ProtocolStats

from . import health

operator_api = DefaultRouter(trailing_slash=True)
operator_api.register("detections", DetectionViewSet, basename="detection")
operator_api.register("watchlists", WatchlistViewSet, basename="watchlist")
operator_api.register("alerts", AlertViewSet, basename="alert")
operator_api.register("webhooks", WebhookViewSet, basename="webhook")
operator_api.register("devices", DeviceViewSet, basename="device")
operator_api.register("commands", CommandViewSet, basename="command")
operator_api.register("health", HealthViewSet, basename="health")

urlpatterns = [
    path("", include("lpr_server.dashboard.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("transport.rest.urls")),
    path("api/v1/stats/protocols/", ProtocolStats.as_view(), name="stats-protocols"),
    path("api/v1/stats/devices/", DeviceStats.as_view(), name="stats-devices"),
    path("api/v1/stats/traffic/", TrafficStatsView.as_view(), name="stats-traffic"),
    path("api/v1/", include(operator_api.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("media/images/<uuid:image_id>/", detection_views.image, name="image"),
    path("media/images/<uuid:image_id>/thumbnail/", detection_views.image, {"thumbnail": True}, name="image-thumbnail"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.prometheus, name="metrics"),
]

if settings.BENCH_VIEWS:
    urlpatterns.append(path("bench/", include("bench.urls")))

handler404 = "transport.errors.not_found"
handler500 = "transport.errors.server_error"
