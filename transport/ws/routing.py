"""WebSocket routes. Cameras authenticate with their JWT; operators' routes use the session and check Origin."""

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from .dashboard import DashboardConsumer
from .device import DeviceConsumer
from .video import VideoViewerConsumer


def _operators(app):
    # Session cookies ride along on any page's WebSocket, so browser routes refuse foreign origins.
    return AllowedHostsOriginValidator(AuthMiddlewareStack(app))


websocket_urlpatterns = [
    path("ws/device/", DeviceConsumer.as_asgi()),
    path("ws/dashboard/", _operators(DashboardConsumer.as_asgi())),
    path("ws/video/<str:device_id>/", _operators(VideoViewerConsumer.as_asgi())),
]
