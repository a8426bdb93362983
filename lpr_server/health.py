"""Answers for load balancers and Prometheus: /healthz, /readyz, /metrics."""

import socket
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse

from transport import metrics

CHECK_TIMEOUT_S = 1.0


def healthz(request):
    """The process is up and serving; checks nothing else, so it answers even when storage is down."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Every dependency this process is configured with answers; `null` for one it is not configured with."""
    checks = {"database": _database_ok(), "redis": _redis_ok(), "mqtt_broker": _broker_ok()}
    ready = all(ok is not False for ok in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def prometheus(request):
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4")


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _redis_ok() -> bool | None:
    """Channel layer and Celery broker; without REDIS_URL both live in this process."""
    if not settings.REDIS_URL:
        return None
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT_S,
                                  socket_connect_timeout=CHECK_TIMEOUT_S)  # fmt: skip
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _broker_ok() -> bool | None:
    """The MQTT broker accepts connections (MQTT_URL); the embedded broker lives and dies with `serve` itself."""
    if not settings.MQTT_URL:
        return None
    parts = urlsplit(settings.MQTT_URL)
    port = parts.port or (8883 if parts.scheme in ("mqtts", "ssl") else 1883)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=CHECK_TIMEOUT_S):
            return True
    except OSError:
        return False
