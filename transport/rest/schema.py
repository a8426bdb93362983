"""The device API in the OpenAPI schema (/api/schema/), beside the operator API.

The device endpoints are plain Django views (`device_auth.device_api`): their
behaviour is the contract's, not DRF's. drf-spectacular documents DRF views
only, so each device view carries, as `view.cls`, a documentation-only
APIView (the way DRF's own `@api_view` marks a function view). Its methods
are never called; requests go to the Django view as before. The shapes below
restate CONTRACT sections 1-3 for the schema and must follow them.

`add_error_responses` (a postprocessing hook) gives every operation the
contract's error body as its `default` answer.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.views import APIView

from devices.models import TRANSPORTS

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "enum": ["invalid", "unauthenticated", "forbidden", "not_found", "conflict",
                                             "method_not_allowed", "too_large", "unsupported_media_type",
                                             "not_acceptable", "throttled", "unavailable", "server_error"]},  # fmt: skip
        "detail": {"type": "string"},
        "field": {"type": ["string", "null"]},
        "message_id": {"type": ["string", "null"]},
    },
}
DEVICE_AUTH = [{"deviceKey": []}]
COMPAT_AUTH = [{"deviceKey": []}, {"compatToken": []}, {"compatQueryKey": []}]
SECURITY_SCHEMES = {
    "deviceKey": {"type": "apiKey", "in": "header", "name": "Authorization",
                  "description": "`Device <key>`: the device key issued with its credentials."},
    "compatToken": {"type": "apiKey", "in": "header", "name": "Authorization",
                    "description": "`Token <key>` (compat endpoints only)."},
    "compatQueryKey": {"type": "apiKey", "in": "query", "name": "key",
                       "description": "The device key as `?key=` (compat endpoints only, for cameras without headers)."},
}  # fmt: skip
SIGNATURE_HEADERS = [
    OpenApiParameter("X-Timestamp", str, OpenApiParameter.HEADER, description="Unix seconds; `require_signature` devices."),
    OpenApiParameter("X-Signature", str, OpenApiParameter.HEADER,
                     description='`sha256=<hex HMAC-SHA256(key, timestamp + "." + raw body)>`; `require_signature` devices.'),
]  # fmt: skip


class Envelope(serializers.Serializer):
    message_id = serializers.UUIDField()
    timestamp = serializers.DateTimeField(help_text="ISO 8601 with a zone; at most 24 h in the future.")
    protocol = serializers.ChoiceField(TRANSPORTS)
    edge_device_id = serializers.CharField(max_length=64, help_text="Must be the authenticated device.")
    data_type = serializers.ChoiceField(["detection", "health", "config", "control"])
    payload = serializers.JSONField(help_text="An object, or a string when compressed or encrypted.")
    metadata = serializers.DictField(required=False, help_text="protocol_version (1.x), compression, encryption.")
    sequence = serializers.IntegerField(required=False, min_value=0)


Ack = inline_serializer("IngestAck", {"message_id": serializers.UUIDField(), "status": serializers.CharField()})
BatchResults = inline_serializer("BatchResults", {"results": serializers.ListField(child=inline_serializer("BatchResult", {
    "message_id": serializers.CharField(allow_null=True), "status": serializers.CharField(),
    "error": serializers.CharField(required=False), "detail": serializers.CharField(required=False)}))})  # fmt: skip
CompatResults = inline_serializer("CompatResults", {"results": serializers.ListField(child=inline_serializer(
    "CompatResult", {"message_id": serializers.CharField(allow_null=True), "status": serializers.CharField(),
                     "error": serializers.CharField(required=False)}))})  # fmt: skip
ControlPayload = inline_serializer("ControlPayload", {
    "command_id": serializers.UUIDField(), "status": serializers.ChoiceField(["received", "done", "failed"]),
    "result": serializers.DictField(required=False, allow_null=True),
    "error": serializers.CharField(required=False, allow_null=True)})  # fmt: skip


def _device(summary: str, request=None, responses=None, auth=DEVICE_AUTH, parameters=(), **kwargs):
    return extend_schema(summary=summary, tags=["device API"], auth=auth, request=request, responses=responses,
                         parameters=[*SIGNATURE_HEADERS, *parameters], **kwargs)  # fmt: skip


class _DeviceDoc(APIView):
    # Documentation only (see the module docstring); a docstring here would become every operation's description.
    authentication_classes: list = []
    permission_classes: list = []


class Ingest(_DeviceDoc):
    @_device("One envelope", {"application/json": Envelope},
             {201: Ack, 200: OpenApiResponse(Ack, description="Already stored: `duplicate`.")})  # fmt: skip
    def post(self, request): ...


class IngestBatch(_DeviceDoc):
    @_device("Up to 1000 envelopes", {"application/json": inline_serializer(
        "Batch", {"messages": serializers.ListField(child=Envelope(), max_length=1000)})}, {200: BatchResults})  # fmt: skip
    def post(self, request): ...


class Images(_DeviceDoc):
    @_device("A JPEG or PNG picture (at most 5 MiB)",
             {"multipart/form-data": inline_serializer("ImageUpload", {"image": serializers.FileField()})},
             {201: inline_serializer("ImageRef", {"image_ref": serializers.UUIDField()})})  # fmt: skip
    def post(self, request): ...


class DeviceConfig(_DeviceDoc):
    @_device("The desired configuration", None, {200: OpenApiTypes.OBJECT})
    def get(self, request): ...


class DeviceCommands(_DeviceDoc):
    @_device("Pending commands, long-polling up to `wait` seconds", None,
             {200: inline_serializer("PendingCommands", {"commands": serializers.ListField(child=serializers.DictField())})},
             parameters=[OpenApiParameter("wait", float, description="0 to 30 seconds")])  # fmt: skip
    def get(self, request): ...


class AckCommand(_DeviceDoc):
    @_device("A camera's answer to a command", {"application/json": ControlPayload},
             {200: inline_serializer("CommandState", {"command_id": serializers.UUIDField(),
                                                      "state": serializers.CharField()})})  # fmt: skip
    def post(self, request, command_id): ...


class DeviceProtocol(_DeviceDoc):
    @_device("The recommended transport and its score", None, {200: OpenApiTypes.OBJECT})
    def get(self, request): ...


class DeviceToken(_DeviceDoc):
    @_device("A short-lived JWT for WebSocket and Socket.IO", None,
             {201: inline_serializer("DeviceToken", {"token": serializers.CharField(),
                                                     "expires_in": serializers.IntegerField()})})  # fmt: skip
    def post(self, request): ...


class OpenALPR(_DeviceDoc):
    @_device("OpenALPR / Rekor agent webhook", {"application/json": OpenApiTypes.OBJECT},
             {200: CompatResults, 201: CompatResults}, auth=COMPAT_AUTH)  # fmt: skip
    def post(self, request): ...


class PlateRecognizer(_DeviceDoc):
    @_device("Plate Recognizer Stream or Snapshot webhook", {
        "application/json": OpenApiTypes.OBJECT,
        "multipart/form-data": inline_serializer("PlateRecognizerUpload", {
            "json": serializers.CharField(), "upload": serializers.FileField(required=False)}),
    }, {200: CompatResults, 201: CompatResults}, auth=COMPAT_AUTH)  # fmt: skip
    def post(self, request): ...


class Hikvision(_DeviceDoc):
    @_device("Hikvision ANPR EventNotificationAlert", {"application/xml": OpenApiTypes.STR},
             {200: CompatResults, 201: CompatResults}, auth=COMPAT_AUTH)  # fmt: skip
    def post(self, request): ...


def documented(view, doc: type[APIView]):
    """Mark a device view for the schema generator; the view itself is unchanged."""
    view.cls, view.initkwargs = doc, {}
    return view


def add_error_responses(result: dict, generator, request, public) -> dict:
    """Every operation may answer with the contract's error body (401, 403, 404, 413, 429, 503...)."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["ContractError"] = ERROR_SCHEMA
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    error = {"description": "An error in the contract's format.",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ContractError"}}}}  # fmt: skip
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].setdefault("default", error)
    return result
