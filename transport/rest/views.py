"""The camera-facing REST API (CONTRACT section 3): bytes in, pipeline, answer out."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

import msgspec
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse

from detections.images import ImageRejected, store_upload
from devices import commands, configuration, connectivity
from devices.models import Device
from transport import auth, batching, envelope, pipeline
from transport.errors import error_response

from .device_auth import device_api, is_json, refuse_body, require_json

class _Batch(msgspec.Struct):
    messages: list[msgspec.Raw]


_batch_decoder = msgspec.json.Decoder(_Batch)


@device_api(max_bytes=settings.ENVELOPE_MAX_BYTES, defer_auth=True)
async def ingest(request: HttpRequest, credentials: auth.Credentials) -> HttpResponse:
    if not is_json(request):
        return await sync_to_async(require_json)(request)
    return await store_one(request.body, credentials, _submitter(request))


@device_api(max_bytes=settings.BATCH_MAX_BYTES, defer_auth=True)
async def ingest_batch(request: HttpRequest, credentials: auth.Credentials) -> HttpResponse:
    if not is_json(request):
        return await sync_to_async(require_json)(request)
    return await store_batch(request.body, credentials, _submitter(request))


Submit = Callable[[list[pipeline.Inbound]], Awaitable[list[pipeline.Ack]]]


async def store_one(body: bytes, credentials: auth.Credentials, submit: Submit) -> HttpResponse:
    """`POST /api/v1/ingest/` once its method, size and media type are checked (here and in transport.rest.asgi)."""
    ack = (await submit([pipeline.Inbound(body, None, "rest", credentials=credentials)]))[0]
    if ack.status == pipeline.ACCEPTED:
        return _json({"message_id": ack.message_id, "status": ack.status}, status=201)
    if ack.status == pipeline.DUPLICATE:
        return _json({"message_id": ack.message_id, "status": ack.status})
    return error_response(ack.error, ack.detail, ack.field, ack.retry_after, message_id=ack.message_id)


async def store_batch(body: bytes, credentials: auth.Credentials, submit: Submit) -> HttpResponse:
    """`POST /api/v1/ingest/batch/` once its method, size and media type are checked."""
    try:
        raw = _batch_decoder.decode(body).messages
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        return await sync_to_async(refuse_body)("invalid", f'Body must be {{"messages": [envelope, ...]}}: {exc}', body,
                                                "messages")  # fmt: skip
    if len(raw) > settings.BATCH_MAX_MESSAGES:
        detail = f"{len(raw)} messages; a batch holds at most {settings.BATCH_MAX_MESSAGES}."
        return await sync_to_async(refuse_body)("too_large", detail, body, "messages")
    acks = await submit([pipeline.Inbound(bytes(item), None, "rest", credentials=credentials) for item in raw])
    for ack in acks:
        if ack.status in (pipeline.THROTTLED, pipeline.UNAVAILABLE) or ack.credentials_refused:
            return error_response(ack.error, ack.detail, retry_after=ack.retry_after)
    return _json({"results": [_result(ack) for ack in acks]})


def _submitter(request: HttpRequest) -> Submit:
    if isinstance(request, ASGIRequest):  # a long-lived server loop: share writes with concurrent requests
        return batching.submit
    return sync_to_async(pipeline.ingest_batch)  # WSGI (and Django's test client): commit alone


def _json(body: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(envelope.encode_json(body), status=status, content_type="application/json")


def _result(ack: pipeline.Ack) -> dict:
    out = {"message_id": ack.message_id, "status": ack.status}
    if ack.error:
        out.update(error=ack.error, detail=ack.detail)
    return out


@device_api(max_bytes=settings.IMAGE_MAX_BYTES + 64 * 1024)
def upload_image(request: HttpRequest, device: Device) -> JsonResponse:
    if request.content_type != "multipart/form-data":
        return error_response("unsupported_media_type", "Send multipart/form-data with the file in the 'image' field.")
    upload = request.FILES.get("image")
    if upload is None:
        return error_response("invalid", "Missing the 'image' file field.", "image")
    try:
        image = store_upload(device, upload)
    except ImageRejected as exc:
        return error_response(exc.code, exc.detail, "image")
    return JsonResponse({"image_ref": str(image.id)}, status=201)


@device_api(methods=("GET",))
def device_config(request: HttpRequest, device: Device) -> JsonResponse:
    return JsonResponse(configuration.desired(device))


@device_api(methods=("GET",))
def device_protocol(request: HttpRequest, device: Device) -> JsonResponse:
    return JsonResponse(connectivity.recommend(device).as_dict())


@device_api(methods=("POST",))
def device_token(request: HttpRequest, device: Device) -> JsonResponse:
    token, ttl = auth.issue_token(device)
    return JsonResponse({"token": token, "expires_in": ttl}, status=201)


LONG_POLL_INTERVAL_S = 0.5


@device_api(methods=("GET",))
async def device_commands(request: HttpRequest, device: Device) -> JsonResponse:
    try:
        wait = float(request.GET.get("wait", 0))
    except ValueError:
        return error_response("invalid", "wait must be a number of seconds.", "wait")
    if not 0 <= wait <= settings.COMMAND_LONG_POLL_MAX_S:
        return error_response("invalid", f"wait must be between 0 and {settings.COMMAND_LONG_POLL_MAX_S}.", "wait")
    deadline = time.monotonic() + wait
    while True:
        pending = await sync_to_async(_hand_out)(device)
        if pending or time.monotonic() >= deadline:
            return JsonResponse({"commands": pending})
        await asyncio.sleep(min(LONG_POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))


def _hand_out(device: Device) -> list[dict]:
    pending = commands.pending_for(device)
    commands.mark_sent(pending, "rest")
    return [commands.wire_shape(c) for c in pending]


@device_api(max_bytes=64 * 1024)
def ack_command(request: HttpRequest, device: Device, command_id: str) -> JsonResponse:
    try:
        payload = envelope.parse_control(request.body)
    except envelope.EnvelopeError as exc:
        return error_response(exc.code, exc.detail, exc.field)
    if str(payload.command_id) != str(command_id):
        return error_response("invalid", "command_id in the body differs from the one in the URL.", "command_id")
    answer = commands.Answer(payload.command_id, payload.status, payload.result, payload.error)
    with transaction.atomic():
        refused = commands.apply_answers(device.id, [answer], "rest")
    if refused:
        error = refused[payload.command_id]
        return error_response(error.code, error.detail, "command_id")
    state = commands.Command.objects.values_list("state", flat=True).get(pk=payload.command_id)
    return JsonResponse({"command_id": str(payload.command_id), "state": state})
