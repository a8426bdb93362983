"""The contract's error format, `{"error": code, "detail": text, "field"?: name}`, for every HTTP answer."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.views import exception_handler

STATUS = {
    "invalid": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "too_large": 413,
    "unsupported_media_type": 415,
    "throttled": 429,
    "unavailable": 503,
    "server_error": 500,  # never by design: what an unexpected failure under /api/ answers
}
# A socket (device or browser) refused or closed for one of these: the close code that says why.
# 4503 as HTTP's 503: storage was unreachable, so the token could not be checked; connect again shortly.
# (The standard's 1013 "Try Again Later" is not one an application may send through autobahn: 1000 or 3000-4999.)
# 4408 as HTTP's 408: the other side took too long (a camera silent past its timeout, a dashboard not reading).
CLOSE_CODES = {"unauthenticated": 4401, "forbidden": 4403, "too_slow": 4408, "unavailable": 4503}


def error_response(code: str, detail: str, field: str | None = None, retry_after: int | None = None, **extra) -> JsonResponse:
    body = {"error": code, "detail": detail, **extra}
    if field:
        body["field"] = field
    response = JsonResponse(body, status=STATUS.get(code, 400))
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    if code == "unauthenticated":
        response["WWW-Authenticate"] = 'Device realm="lpr"'
    return response


_DRF_CODES = [
    (exceptions.NotAuthenticated, "unauthenticated"),
    (exceptions.AuthenticationFailed, "unauthenticated"),
    (exceptions.PermissionDenied, "forbidden"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "throttled"),
    (exceptions.ValidationError, "invalid"),
    (exceptions.ParseError, "invalid"),
]


def drf_exception_handler(exc, context):
    """The operator API's errors in the same shape as the device API's."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "invalid")
    data = response.data
    if isinstance(exc, exceptions.ValidationError) and isinstance(data, dict):
        field, messages = next(iter(data.items()), (None, ["invalid"]))
        message = messages[0] if isinstance(messages, list) and messages else messages
        response.data = {"error": code, "detail": str(message), "field": field}
    elif isinstance(exc, exceptions.ValidationError):
        response.data = {"error": code, "detail": "; ".join(str(m) for m in data)}
    else:
        response.data = {"error": code, "detail": str(data.get("detail", exc)) if isinstance(data, dict) else str(data)}
    return response


API_PREFIX = "/api/"


def not_found(request, exception=None):
    """Django's 404 (no route matched): the contract's JSON under /api/, the usual page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return error_response("not_found", f"No such endpoint or object: {request.path[:200]}")
    return defaults.page_not_found(request, exception)


def server_error(request):
    """An unexpected failure (logged with its traceback): JSON under /api/, the usual page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return api_server_error()
    return defaults.server_error(request)


def api_server_error() -> JsonResponse:
    return error_response("server_error", "The server failed to answer; the failure is logged. Retry later.")
