"""HTTP, Channels WebSockets and Socket.IO, on one ASGI application.

    /socket.io/    Socket.IO (python-socketio), namespace /device
    /ws/...        Channels consumers (transport/ws/routing.py)
    ingest POSTs   straight to the pipeline (transport/rest/asgi.py)
    device API     Django without middleware (lpr_server/http.py)
    anything else  Django
"""

import asyncio
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lpr_server.settings")
django_http = get_asgi_application()  # must run before anything imports models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from lpr_server.http import DeviceAPIHandler, SyncThreads, router  # noqa: E402
from transport import live, loop_lag  # noqa: E402
from transport.rest import asgi as rest_asgi  # noqa: E402
from transport.socketio.server import mount  # noqa: E402
from transport.ws.routing import websocket_urlpatterns  # noqa: E402

http = router(django_http, DeviceAPIHandler(), SyncThreads(settings.HTTP_SYNC_THREADS),
              posts={path: rest_asgi.ingest for path in rest_asgi.ROUTES})  # fmt: skip
websocket_routes = list(websocket_urlpatterns)
if settings.BENCH_VIEWS:  # bench/run's ceilings: bare echo endpoints beside the real ones (never in production)
    from bench import echo
    from transport.socketio.server import sio

    websocket_routes += echo.websocket_urlpatterns
    echo.register(sio)
_app = mount(ProtocolTypeRouter({"http": http, "websocket": URLRouter(websocket_routes)}))


async def application(scope, receive, send):
    # Live broadcasts from worker threads (post-commit hooks) must run on the server's loop.
    loop = asyncio.get_running_loop()
    live.bind_loop(loop)
    loop_lag.watch(loop)
    return await _app(scope, receive, send)
