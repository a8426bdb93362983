"""Answers for load balancers and Prometheus: /healthz, /readyz, /metrics."""

from django.db import connection
from django.http import HttpResponse, JsonResponse

from transport import metrics


def healthz(request):
    """The process is up and serving; checks nothing else, so it answers even when storage is down."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    checks = {"database": _database_ok()}
    ready = all(checks.values())
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
