"""Authenticating a camera's HTTP request, and mapping failures to the contract's errors."""

from __future__ import annotations

import asyncio
from functools import wraps
from typing import Callable

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt

from devices.models import Device
from transport import auth, pipeline
from transport.errors import error_response

UNAVAILABLE_RETRY_S = 5


def authenticate_request(request: HttpRequest, schemes: tuple[str, ...] = ("Device",)) -> Device:
    """The device the request proves (key, and signature for devices that must sign), or `AuthError`."""
    credentials = presented(request, schemes)
    return credentials.check(auth.device_for_key(credentials.key))


def presented(request: HttpRequest, schemes: tuple[str, ...] = ("Device",)) -> auth.Credentials:
    """What the request shows to prove its device: key, signature headers, the body they sign."""
    key = auth.key_from_header(request.headers.get("Authorization", ""), schemes)
    if not key and "Token" in schemes:
        key = request.GET.get("key", "")  # compat endpoints: many cameras cannot set headers
    body = request.body if request.method in ("POST", "PUT", "PATCH") else b""
    return auth.Credentials(key, request.headers.get("X-Timestamp"), request.headers.get("X-Signature"), body)


def _check(request: HttpRequest, methods: tuple[str, ...], max_bytes: int | None) -> HttpResponse | None:
    if request.method not in methods:
        response = error_response("method_not_allowed", f"Use {' or '.join(methods)}.")
        response["Allow"] = ", ".join(methods)  # HTTP requires it on a 405
        return response
    if _too_large(request, max_bytes):
        return refuse(request, "too_large", too_large_detail(_length(request), max_bytes), read_body=False)
    return None


def too_large_detail(length: int, max_bytes: int) -> str:
    return f"Body is {length} bytes; the limit is {max_bytes}."


def not_json_detail(content_type: str) -> str:
    return f"Send application/json, not {content_type}."


def _too_large(request: HttpRequest, max_bytes: int | None) -> bool:
    return max_bytes is not None and _length(request) > max_bytes


def _length(request: HttpRequest) -> int:
    return int(request.headers.get("Content-Length") or 0)


def refuse(request: HttpRequest, code: str, detail: str, field: str | None = None, device: Device | None = None,
           read_body: bool = True) -> HttpResponse:  # fmt: skip
    """Answer in the contract's form and keep a record an operator can see."""
    body = request.body if read_body and request.method == "POST" else b""
    return refuse_body(code, detail, body, field, device)


def refuse_body(code: str, detail: str, body: bytes, field: str | None = None, device: Device | None = None) -> HttpResponse:
    """`refuse`, for a request known by its body only."""
    pipeline.record_refusal("rest", code, detail, body, device)
    return error_response(code, detail, field)


def device_api(methods: tuple[str, ...] = ("POST",), max_bytes: int | None = None, schemes=("Device",),
               defer_auth: bool = False) -> Callable:  # fmt: skip
    """Wrap a view `fn(request, device, ...)`: method, size and device auth checked, errors in contract form.

    Works for sync and async views alike. With `defer_auth` (async ingest views) the view gets the request's
    `auth.Credentials` instead of a device and hands them to the pipeline, which authenticates the requests it
    commits together with one query.
    """

    def decorate(fn: Callable) -> Callable:
        if asyncio.iscoroutinefunction(fn):

            @wraps(fn)
            async def async_view(request, *args, **kwargs):
                if request.method not in methods or _too_large(request, max_bytes):  # a refusal is recorded
                    return await sync_to_async(_check)(request, methods, max_bytes)
                try:
                    if defer_auth:
                        return await fn(request, presented(request, schemes), *args, **kwargs)
                    device = await sync_to_async(authenticate_request)(request, schemes)
                    return await fn(request, device, *args, **kwargs)
                except auth.AuthError as exc:
                    return await sync_to_async(refuse)(request, exc.code, exc.detail)
                except pipeline.STORAGE_DOWN:
                    return unavailable()

            return csrf_exempt(async_view)

        @wraps(fn)
        def view(request, *args, **kwargs):
            if (refusal := _check(request, methods, max_bytes)) is not None:
                return refusal
            device = None
            try:
                device = authenticate_request(request, schemes)
                return fn(request, device, *args, **kwargs)
            except auth.AuthError as exc:
                return refuse(request, exc.code, exc.detail)
            except MultiPartParserError as exc:  # raised where a view first reads request.FILES or POST
                detail = f"The multipart body could not be read ({exc}); send multipart/form-data with its boundary."
                return refuse(request, "invalid", detail, device=device)
            except pipeline.STORAGE_DOWN:
                return unavailable()

        return csrf_exempt(view)

    return decorate


def is_json(request: HttpRequest) -> bool:
    return is_json_type(request.content_type or "")


def is_json_type(content_type: str) -> bool:
    """For a media type without its parameters ("" when the request named none)."""
    return not content_type or content_type == "application/json" or content_type.endswith("+json")


def require_json(request: HttpRequest, device: Device | None = None) -> HttpResponse | None:
    if is_json(request):
        return None
    return refuse(request, "unsupported_media_type", not_json_detail(request.content_type), device=device)


def unavailable() -> HttpResponse:
    return error_response("unavailable", "Storage is unavailable; nothing was stored. Resend later.", retry_after=UNAVAILABLE_RETRY_S)

