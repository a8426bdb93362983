"""Schemathesis against the project's own OpenAPI schema (/api/schema/): the operator API and the device API.

Every operation is called with generated requests, valid and invalid ones, through the WSGI application on the
test database, with a device key (device API) or a staff member's token (operator API). No answer may be a
5xx, and every answer must be one the schema documents, in its content type and shape.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, given
from hypothesis.errors import Unsatisfiable
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)  # fmt: skip

from detections.alert_models import Alert, Watchlist, WatchlistEntry, Webhook
from detections.models import Detection
from devices import commands
from lpr_server import tokens
from tests.factories import DeviceFactory, UserFactory, envelope
from transport.pipeline import ingest

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
DEVICE_PATHS = ("/api/v1/ingest", "/api/v1/images/", "/api/v1/device/", "/api/v1/compat/")
MAX_EXAMPLES = 12


@pytest.fixture(scope="module")
def api(django_db_setup, django_db_blocker):
    """The schema as /api/schema/ serves it, a device and a staff member to call it with, and one object of each
    kind for path parameters. Committed for the module (the schema is loaded once), removed after it."""
    with django_db_blocker.unblock():
        device = DeviceFactory(rate_limit_per_s=1e6)
        staff = UserFactory(is_staff=True)
        token = tokens.issue(staff)[1]
        objects = _seed(device)
        app = get_wsgi_application()
        schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app, headers={"Authorization": f"Token {token}"})
        yield {"schema": schema, "objects": objects, "operator": f"Token {token}", "key": f"Device {device.issued.key}"}
        Watchlist.objects.filter(pk=objects["watchlist"]).delete()
        Webhook.objects.filter(pk=objects["webhook"]).delete()
        device.delete()
        staff.delete()


def _seed(device) -> dict:
    ingest(envelope(device.id), device, "rest")
    detection = Detection.objects.get(device=device)
    watchlist = Watchlist.objects.create(name=f"schemathesis {device.id}")
    entry = WatchlistEntry.objects.create(watchlist=watchlist, value="AB123CD")
    alert = Alert.objects.create(watchlist=watchlist, entry=entry, detection=detection, device=device, plate="AB123CD",
                                 matched="AB123CD", captured_at=detection.captured_at)  # fmt: skip
    command = commands.send(device.id, "ping", {}, 300)
    webhook = Webhook.objects.create(name="schemathesis", url="https://example.com/hook", secret="s")
    return {"device": device.id, "detection": detection.id, "watchlist": watchlist.id, "entry": entry.id,
            "alert": alert.id, "command": str(command.id), "webhook": webhook.id}  # fmt: skip


def path_parameters(path: str, objects: dict) -> dict:
    """Existing objects for the generated requests that should reach past the lookup (positive mode)."""
    kind = path.split("/")[3]  # /api/v1/<kind>/...
    fixed = {"id": objects.get({"devices": "device", "detections": "detection", "watchlists": "watchlist",
                                "alerts": "alert", "commands": "command", "webhooks": "webhook"}.get(kind, ""))}  # fmt: skip
    fixed.update(entry_id=objects["entry"], command_id=objects["command"])
    return {name: value for name, value in fixed.items() if "{" + name + "}" in path and value is not None}


@pytest.fixture
def wsgi_in_test_transaction():
    """Requests go through Django's WSGI handler, which closes the connection after each (the test's transaction
    with it); Django's own test client unhooks that the same way."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation, from the same generator that serves /api/schema/ (no database needed)."""
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    return sorted((method.upper(), path) for path, ops in paths.items() for method in ops)


CASES = hypothesis_settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                            phases=[Phase.explicit, Phase.generate])  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("method, path", operations())
def test_every_operation_answers_as_its_schema_says(method, path, api, settings, tmp_path, wsgi_in_test_transaction):
    settings.MEDIA_ROOT = tmp_path
    settings.DEVICE_RATE_BURST = 10**6
    operation = api["schema"][path][method]
    headers = {"Authorization": api["key"] if path.startswith(DEVICE_PATHS) else api["operator"]}
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        fixed = path_parameters(path, api["objects"]) if mode == GenerationMode.POSITIVE else None

        @CASES
        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
        def answers_as_documented(case):
            if "wait" in (case.query or {}):
                case.query["wait"] = "0"  # a long poll would hold the run for up to 30 s; its bounds are tested apart
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            answers_as_documented()
        except Unsatisfiable:
            # Negative mode has nothing to break when the only input is a string path parameter.
            assert mode == GenerationMode.NEGATIVE, "no valid request could be generated"


@pytest.mark.django_db
def test_the_schema_documents_the_device_api_under_its_contract_names(api):
    raw = api["schema"].raw_schema
    device_paths = {p for p in raw["paths"] if p.startswith(DEVICE_PATHS)}
    assert device_paths == {
        "/api/v1/ingest/", "/api/v1/ingest/batch/", "/api/v1/images/", "/api/v1/device/config/",
        "/api/v1/device/commands/", "/api/v1/device/commands/{command_id}/ack/", "/api/v1/device/protocol/",
        "/api/v1/device/token/", "/api/v1/compat/openalpr/", "/api/v1/compat/platerecognizer/", "/api/v1/compat/hikvision/",
    }  # fmt: skip
    assert raw["paths"]["/api/v1/ingest/"]["post"]["security"] == [{"deviceKey": []}]
    assert all("default" in op["responses"] for ops in raw["paths"].values() for op in ops.values())
