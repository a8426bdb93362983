"""HTTP, Channels WebSockets and (later) Socket.IO, on one ASGI application."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lpr_server.settings")
django_http = get_asgi_application()  # must run before anything imports models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

websocket_routes: list = []

application = ProtocolTypeRouter(
    {
        "http": django_http,
        "websocket": AuthMiddlewareStack(URLRouter(websocket_routes)),
    }
)
