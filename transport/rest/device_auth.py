"""Authenticating a camera's HTTP request, and mapping failures to the contract's errors."""

from __future__ import annotations

import asyncio
from functools import wraps
from typing import Callable

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from devices.models import Device
from transport import auth, pipeline
from transport.errors import error_response

UNAVAILABLE_RETRY_S = 5


def authenticate_request(request: HttpRequest, schemes: tuple[str, ...] = ("Device",)) -> Device:
    key = auth.key_from_header(request.headers.get("Authorization", ""), schemes)
    if not key and "Token" in schemes:
        key = request.GET.get("key", "")  # compat endpoints: many cameras cannot set headers
    device = auth.authenticate_key(key)
    if device.require_signature:
        body = request.body if request.method in ("POST", "PUT", "PATCH") else b""
        auth.verify_signature(device, request.headers.get("X-Timestamp"), request.headers.get("X-Signature"), body)
    return device


def _check(request: HttpRequest, methods: tuple[str, ...], max_bytes: int | None) -> HttpResponse | None:
    if request.method not in methods:
        response = error_response("method_not_allowed", f"Use {' or '.join(methods)}.")
        response["Allow"] = ", ".join(methods)  # HTTP requires it on a 405
        return response
    length = int(request.headers.get("Content-Length") or 0)
    if max_bytes is not None and length > max_bytes:
        return _refuse(request, "too_large", f"Body is {length} bytes; the limit is {max_bytes}.", read_body=False)
    return None


def _refuse(request: HttpRequest, code: str, detail: str, read_body: bool = True) -> HttpResponse:
    """Answer in the contract's form and keep a record an operator can see."""
    body = request.body if read_body and request.method == "POST" else b""
    pipeline.record_refusal("rest", code, detail, body)
    return error_response(code, detail)


def device_api(methods: tuple[str, ...] = ("POST",), max_bytes: int | None = None, schemes=("Device",)) -> Callable:
    """Wrap a view `fn(request, device, ...)`: method, size and device auth checked, errors in contract form.

    Works for sync and async views alike.
    """

    def decorate(fn: Callable) -> Callable:
        if asyncio.iscoroutinefunction(fn):

            @wraps(fn)
            async def async_view(request, *args, **kwargs):
                if (refusal := _check(request, methods, max_bytes)) is not None:
                    return refusal
                try:
                    device = await sync_to_async(authenticate_request)(request, schemes)
                    return await fn(request, device, *args, **kwargs)
                except auth.AuthError as exc:
                    return await sync_to_async(_refuse)(request, exc.code, exc.detail)
                except (OperationalError, InterfaceError):
                    return _unavailable()

            return csrf_exempt(async_view)

        @wraps(fn)
        def view(request, *args, **kwargs):
            if (refusal := _check(request, methods, max_bytes)) is not None:
                return refusal
            try:
                return fn(request, authenticate_request(request, schemes), *args, **kwargs)
            except auth.AuthError as exc:
                return _refuse(request, exc.code, exc.detail)
            except (OperationalError, InterfaceError):
                return _unavailable()

        return csrf_exempt(view)

    return decorate


def require_json(request: HttpRequest) -> HttpResponse | None:
    content_type = request.content_type or ""
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        return error_response("unsupported_media_type", f"Send application/json, not {content_type}.")
    return None


def _unavailable() -> HttpResponse:
    return error_response("unavailable", "Storage is unavailable; nothing was stored. Resend later.", retry_after=UNAVAILABLE_RETRY_S)

