"""`POST /api/v1/ingest/` and `/api/v1/ingest/batch/` served straight from ASGI (lpr_server/http.py routes them here).

Django's request handling costs about a millisecond of CPU a request on a
2-core machine (request signals, each with a hop to a thread and back, the
request object, the headers copied into META), more than storing the
envelope: a camera that posts each read as it makes it sends a request per
read. Here the request is read from the ASGI scope and the views' own code
answers it (`store_one`, `store_batch`, the same checks and refusals), so
the answers are the views' answers. Other methods on these paths, and
Django's test client, still go through the views.
"""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http import HttpResponse
from django.utils.http import parse_header_parameters

from transport import auth, batching, pipeline
from transport.errors import api_server_error

from . import views
from .device_auth import is_json_type, not_json_detail, refuse_body, too_large_detail, unavailable

log = logging.getLogger(__name__)

ROUTES = {  # path -> (largest body, what stores it)
    "/api/v1/ingest/": (settings.ENVELOPE_MAX_BYTES, views.store_one),
    "/api/v1/ingest/batch/": (settings.BATCH_MAX_BYTES, views.store_batch),
}


async def ingest(scope, receive, send) -> None:
    """ASGI app for a POST to one of ROUTES."""
    body = await _body(receive)
    if body is None:  # the camera went away before it had sent the body
        return
    try:
        response = await _answer(scope, body)
    except Exception:
        log.exception("POST %s failed", scope["path"])
        response = api_server_error()
    await _send(response, send)


async def _answer(scope, body: bytes) -> HttpResponse:
    max_bytes, store = ROUTES[scope["path"]]
    headers = _headers(scope)
    declared = int(headers.get("content-length") or 0)
    if declared > max_bytes:
        return await sync_to_async(_refuse)("too_large", too_large_detail(declared, max_bytes), b"")
    content_type = parse_header_parameters(headers.get("content-type", ""))[0]
    if not is_json_type(content_type):
        return await sync_to_async(_refuse)("unsupported_media_type", not_json_detail(content_type), body)
    credentials = auth.Credentials(auth.key_from_header(headers.get("authorization", "")), headers.get("x-timestamp"),
                                   headers.get("x-signature"), body)  # fmt: skip
    try:
        return await store(body, credentials, batching.submit)
    except pipeline.STORAGE_DOWN:
        return unavailable()


def _refuse(code: str, detail: str, body: bytes) -> HttpResponse:
    # No request signals here, so nothing else drops this thread's broken or over-age database connection.
    close_old_connections()
    return refuse_body(code, detail, body)


def _headers(scope) -> dict[str, str]:
    """Header names lowercased; a repeated header's values joined with commas, as Django joins them."""
    out: dict[str, str] = {}
    for name, value in scope["headers"]:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        out[key] = f"{out[key]},{text}" if key in out else text
    return out


async def _body(receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(response: HttpResponse, send) -> None:
    body = response.content
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
