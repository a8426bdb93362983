"""The ingest POSTs served straight from ASGI (transport/rest/asgi.py) answer as the Django views do.

Every behaviour runs twice: through the server's ASGI application (what Daphne calls) and through Django's
test client (the views). Same status, same body, same headers that matter, same records.
"""

import asyncio
import json

import pytest
from django.conf import settings
from django.test import Client

from detections.models import Detection
from lpr_server.asgi import application
from tests.factories import envelope
from transport import batching
from transport.models import Message, RejectedMessage

pytestmark = pytest.mark.django_db(transaction=True)  # the ASGI path stores from the writer threads


@pytest.fixture(autouse=True, scope="module")
def _writers_let_go_of_the_test_database():
    yield
    batching.stop_writers()

HEADERS_THAT_MATTER = ("content-type", "retry-after", "www-authenticate", "allow")


class Answer:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]):
        self.status, self.body, self.headers = status, body, headers

    def json(self):
        return json.loads(self.body)


def via_asgi(path: str, body: bytes, headers: dict[str, str], method: str = "POST", disconnect: bool = False):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"content-length", str(len(body)).encode())]
             + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}  # fmt: skip
    incoming = [{"type": "http.disconnect"}] if disconnect else [
        {"type": "http.request", "body": body[: len(body) // 2], "more_body": True},
        {"type": "http.request", "body": body[len(body) // 2 :], "more_body": False},
    ]
    sent = []

    async def receive():
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()  # nothing more: as a connection that stays open

    async def send(message):
        sent.append(message)

    async def call():
        await asyncio.wait_for(application(scope, receive, send), 20)

    asyncio.run(call())
    if not sent:
        return None
    start = sent[0]
    return Answer(start["status"], b"".join(m.get("body", b"") for m in sent[1:]),
                  {k.decode().lower(): v.decode() for k, v in start["headers"]})  # fmt: skip


def via_django(path: str, body: bytes, headers: dict[str, str], method: str = "POST"):
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k.lower() != "content-type"}
    content_type = headers.get("Content-Type", "application/octet-stream")
    response = Client().generic(method, path, body, content_type=content_type, **extra)
    return Answer(response.status_code, response.content, {k.lower(): v for k, v in response.items()})


@pytest.fixture(params=["asgi", "django"])
def post(request, device):
    send = via_asgi if request.param == "asgi" else via_django

    def post(path: str, body, content_type: str = "application/json", key: str | None = None, **headers):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return send(path, data, {"Content-Type": content_type, "Authorization": f"Device {key or device.issued.key}",
                                 **headers})  # fmt: skip

    return post


def _matters(answer: Answer) -> dict:
    return {k: v for k, v in answer.headers.items() if k in HEADERS_THAT_MATTER}


def test_an_envelope_is_stored_once_and_answered_accepted_then_duplicate(post, device):
    env = envelope(device.id, payload={"plate": "ab 123 cd", "confidence": 0.9})

    first, again = post("/api/v1/ingest/", env), post("/api/v1/ingest/", env)

    assert (first.status, first.json()) == (201, {"message_id": env["message_id"], "status": "accepted"})
    assert (again.status, again.json()) == (200, {"message_id": env["message_id"], "status": "duplicate"})
    assert _matters(first) == {"content-type": "application/json"}
    assert Detection.objects.get(message_id=env["message_id"]).plate_normalized == "AB123CD"
    assert Message.objects.get(message_id=env["message_id"]).received_via == "rest"


def test_a_batch_is_answered_per_message(post, device):
    good = [envelope(device.id, payload={"plate": f"CAR{n}", "confidence": 0.8}) for n in range(2)]
    bad = envelope(device.id, payload={"plate": "X", "confidence": 7})

    answer = post("/api/v1/ingest/batch/", {"messages": [*good, bad]})

    assert answer.status == 200
    results = answer.json()["results"]
    assert [(r["message_id"], r["status"]) for r in results] == [
        (good[0]["message_id"], "accepted"), (good[1]["message_id"], "accepted"), (bad["message_id"], "rejected")
    ]  # fmt: skip
    assert results[2]["error"] == "invalid"
    assert Detection.objects.filter(device=device).count() == 2


@pytest.mark.parametrize(
    "case, expected_status, expected_error",
    [("wrong key", 401, "unauthenticated"), ("not json", 415, "unsupported_media_type"),
     ("oversize", 413, "too_large"), ("batch not json", 400, "invalid"), ("batch too long", 413, "too_large")],
)  # fmt: skip
def test_refusals_are_answered_in_the_contracts_form_and_recorded(post, device, case, expected_status, expected_error):
    env = envelope(device.id, payload={"plate": "AB1", "confidence": 0.9})
    path, body, options = {
        "wrong key": ("/api/v1/ingest/", env, {"key": "not-a-key"}),
        "not json": ("/api/v1/ingest/", json.dumps(env).encode(), {"content_type": "text/plain"}),
        "oversize": ("/api/v1/ingest/", b" " * (settings.ENVELOPE_MAX_BYTES + 1), {}),
        "batch not json": ("/api/v1/ingest/batch/", b"{nope", {}),
        "batch too long": ("/api/v1/ingest/batch/", {"messages": [env] * (settings.BATCH_MAX_MESSAGES + 1)}, {}),
    }[case]

    answer = post(path, body, **options)

    assert (answer.status, answer.json()["error"]) == (expected_status, expected_error)
    assert answer.headers["content-type"] == "application/json"
    if case == "wrong key":
        assert answer.headers["www-authenticate"] == 'Device realm="lpr"'
    assert RejectedMessage.objects.filter(transport="rest", error=expected_error).count() == 1
    assert not Detection.objects.exists()


def test_a_throttled_batch_is_refused_whole_with_retry_after(post, device, settings):
    settings.DEVICE_RATE_PER_S, settings.DEVICE_RATE_BURST = 1, 2
    device.rate_limit_per_s = 1
    device.save()
    batch = {"messages": [envelope(device.id, payload={"plate": f"T{n}", "confidence": 0.9}) for n in range(5)]}

    answer = post("/api/v1/ingest/batch/", batch)

    assert (answer.status, answer.json()["error"]) == (429, "throttled")
    assert int(answer.headers["retry-after"]) >= 1
    assert not Detection.objects.exists()


def test_other_methods_on_the_ingest_path_still_get_the_views_answer(device):
    answer = via_asgi("/api/v1/ingest/", b"", {"Authorization": f"Device {device.issued.key}"}, method="GET")

    assert (answer.status, answer.json()["error"], answer.headers["allow"]) == (405, "method_not_allowed", "POST")


def test_a_camera_gone_before_its_body_arrived_gets_no_answer_and_stores_nothing(device):
    env = envelope(device.id, payload={"plate": "GONE1", "confidence": 0.9})

    answer = via_asgi("/api/v1/ingest/", json.dumps(env).encode(), {"Content-Type": "application/json",
                      "Authorization": f"Device {device.issued.key}"}, disconnect=True)  # fmt: skip

    assert answer is None
    assert not Message.objects.exists()


def test_ingest_posts_skip_djangos_request_handling_and_other_requests_do_not(device):
    from django.core.signals import request_started

    seen = []
    receiver = lambda sender, **kwargs: seen.append(sender)  # noqa: E731
    request_started.connect(receiver)
    try:
        env = envelope(device.id, payload={"plate": "FAST1", "confidence": 0.9})
        stored = via_asgi("/api/v1/ingest/", json.dumps(env).encode(), {"Content-Type": "application/json",
                          "Authorization": f"Device {device.issued.key}"})  # fmt: skip
        assert (stored.status, seen) == (201, [])
        via_asgi("/api/v1/ingest/", b"", {}, method="GET")
        assert len(seen) == 1  # the same path with another method: Django's handler, signals and all
    finally:
        request_started.disconnect(receiver)
