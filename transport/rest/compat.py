"""Camera vendors' webhooks (CONTRACT section 3, compat): parse the body, map it, deliver it, answer.

The key may come as `Authorization: Device <key>`, `Authorization: Token <key>` or `?key=<key>`.
Answer: 201 when something new was stored, 200 when all was already stored (a resend) or there was
nothing to store, `{"results": [{"message_id", "status"}]}`; errors in the contract's format.
"""

from __future__ import annotations

import msgspec
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.http.request import RawPostDataException

from devices.models import Device
from transport import pipeline
from transport.compat import hikvision, openalpr, platerecognizer
from transport.compat.common import CompatError
from transport.compat.deliver import deliver
from transport.errors import error_response

from .device_auth import device_api

_json = msgspec.json.Decoder()
compat_api = device_api(max_bytes=settings.COMPAT_MAX_BYTES, schemes=("Device", "Token"))


@compat_api
def openalpr_webhook(request: HttpRequest, device: Device) -> JsonResponse:
    return _handle(request, device, lambda: openalpr.map_body(_parse_json(request.body), device.id, request.body))


@compat_api
def platerecognizer_webhook(request: HttpRequest, device: Device) -> JsonResponse:
    def mapped():
        if request.content_type == "multipart/form-data":
            raw = _part(request, "json")
            if raw is None:
                raise CompatError("The multipart body has no 'json' part.", "json")
            upload = request.FILES.get("upload")
            return platerecognizer.map_body(_parse_json(raw), device.id, raw, upload.read() if upload else None)
        return platerecognizer.map_body(_parse_json(request.body), device.id, request.body)

    return _handle(request, device, mapped)


@compat_api
def hikvision_webhook(request: HttpRequest, device: Device) -> JsonResponse:
    def mapped():
        if request.content_type != "multipart/form-data":
            return hikvision.map_event(hikvision.parse_xml(request.body), device.id, request.body)
        xml_name, raw = _xml_part(request)
        files = {name: f.read() for name, f in request.FILES.items() if name != xml_name}
        return hikvision.map_event(hikvision.parse_xml(raw), device.id, raw, files)

    return _handle(request, device, mapped)


def _handle(request: HttpRequest, device: Device, mapped) -> JsonResponse:
    try:
        acks = deliver(mapped(), device)
    except CompatError as exc:
        pipeline.record_refusal("rest", exc.code, exc.detail, _excerpt(request), device)
        return error_response(exc.code, exc.detail, exc.field)
    for ack in acks:
        if ack.status in (pipeline.THROTTLED, pipeline.UNAVAILABLE):
            return error_response(ack.error, ack.detail, retry_after=ack.retry_after)
    if acks and all(a.status == pipeline.REJECTED for a in acks):
        return error_response(acks[0].error, acks[0].detail, acks[0].field, message_id=acks[0].message_id)
    results = [{"message_id": a.message_id, "status": a.status, **({"error": a.error} if a.error else {})} for a in acks]
    status = 201 if any(a.status == pipeline.ACCEPTED for a in acks) else 200
    return JsonResponse({"results": results}, status=status)


def _excerpt(request: HttpRequest) -> bytes:
    try:
        return request.body[:4096]
    except RawPostDataException:  # multipart already streamed into POST/FILES
        return b""


def _parse_json(raw: bytes):
    try:
        return _json.decode(raw)
    except msgspec.DecodeError as exc:
        raise CompatError(f"Body is not valid JSON: {exc}", "json") from None


def _part(request: HttpRequest, name: str) -> bytes | None:
    if name in request.FILES:
        return request.FILES[name].read()
    value = request.POST.get(name)
    return value.encode() if value is not None else None


def _xml_part(request: HttpRequest) -> tuple[str, bytes]:
    """Cameras name the XML part differently (anpr.xml, MoveDetection.xml...): the part that is XML."""
    for name, value in request.POST.items():
        if value.lstrip().startswith("<"):
            return name, value.encode()
    for name, f in request.FILES.items():
        head = f.read(64)
        f.seek(0)
        if "xml" in (f.content_type or "") or head.lstrip().startswith(b"<"):
            return name, f.read()
    raise CompatError("The multipart body has no XML part.", "xml")
