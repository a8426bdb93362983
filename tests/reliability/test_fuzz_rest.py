"""REST with random and truncated bodies, wrong types and huge bodies: ingest, batch and the camera formats.

Each request is answered in the contract's form (a 2xx, or a 4xx with
`{"error", "detail"}`), never a 500; each refusal is recorded; the database
gains exactly the messages the server answered `accepted`; and the server
still answers afterwards.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import msgspec
import pytest
import requests
from django.utils import timezone

from transport.errors import STATUS
from transport.models import Message, RejectedMessage

from .conftest import still_answers
from .frames import KINDS, NASTY, corpus, kinds_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SAMPLES = Path("/work/shared/samples")
# A wrong type in an unknown payload field is kept, and so is nesting a decoder can take: either may be accepted.
MUST_FAIL = set(KINDS) - {"wrong_type", "deep"} | {"pinned"}


class Tally:
    """What one endpoint answered, for the reconciliation and for docs/reliability.md."""

    def __init__(self) -> None:
        self.sent = self.errors = 0
        self.accepted: set[str] = set()
        self.statuses: dict[int, int] = {}

    def answer(self, response: requests.Response, must_fail: bool, what: str) -> dict | None:
        """Check one answer's form; returns its JSON body."""
        self.sent += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
        body = response.json()
        if response.status_code >= 400:
            assert set(body) >= {"error", "detail"} and body["error"] in STATUS, (what, body)
            assert STATUS[body["error"]] == response.status_code, (what, body)
            self.errors += 1
            return body
        assert not must_fail, f"{what} was answered {response.status_code}: {body}"
        return body


def post(session: requests.Session, url: str, device, body: bytes, content_type: str = "application/json"):
    headers = {"Authorization": f"Device {device.issued.key}", "Content-Type": content_type}
    return session.post(url, data=body, headers=headers, timeout=30)


def refusals_since(start) -> int:
    return RejectedMessage.objects.filter(transport="rest", received_at__gte=start).count()


def stored_ids(device) -> set[str]:
    return {str(i) for i in Message.objects.filter(device=device).values_list("message_id", flat=True)}


def test_ingest_answers_every_bad_body_in_the_contract_form_and_stores_only_the_good(server, fast_device, figures):
    device, rng, tally = fast_device(), random.Random(11), Tally()
    frames = corpus(rng, device.id, 240, "rest")
    start, as_json = timezone.now(), set()
    with requests.Session() as session:
        for n, frame in enumerate(frames):
            content_type = "text/plain" if n % 40 == 39 else "application/json"  # now and then the wrong media type
            body = tally.answer(post(session, f"{server.http}/api/v1/ingest/", device, frame.body, content_type),
                                frame.kind in MUST_FAIL or content_type != "application/json", frame.kind)  # fmt: skip
            if body.get("status") == "accepted":
                tally.accepted.add(body["message_id"])
            if frame.valid and content_type == "application/json":
                as_json.add(frame.message_id)

    assert as_json <= tally.accepted
    assert stored_ids(device) == tally.accepted
    assert refusals_since(start) == tally.errors
    assert still_answers(server)
    figures.record("fuzz", "rest_ingest", inputs=tally.sent, refused=tally.errors, accepted=len(tally.accepted),
                   stored=len(stored_ids(device)), statuses=tally.statuses, kinds=kinds_of(frames))  # fmt: skip


def test_batches_with_bad_bodies_and_bad_items_store_only_the_good_items(server, fast_device, figures):
    device, rng, tally = fast_device(), random.Random(12), Tally()
    url = f"{server.http}/api/v1/ingest/batch/"
    frames = corpus(rng, device.id, 300, "rest")
    items, whole = [], []
    for f in frames:
        try:  # JSON both ways, for Python and for the server (which refuses lone surrogates): a batch item
            item = json.loads(f.body)
            msgspec.json.decode(json.dumps(item))
            items.append((f, item))
        except (ValueError, RecursionError):  # else a whole batch body
            whole.append(f)
            items.append((f, f.text))
    start, item_results = timezone.now(), {"accepted": 0, "rejected": 0}
    with requests.Session() as session:
        for f in whole:
            tally.answer(post(session, url, device, f.body), True, f"batch body {f.kind}")
        for body in [b'{"messages": "x"}', b'{"messages": [1, 2', b"[]", json.dumps({"messages": [{}] * 1001}).encode()]:
            tally.answer(post(session, url, device, body), True, body[:20])
        for at in range(0, len(items), 25):
            part = items[at : at + 25]
            body = tally.answer(post(session, url, device, json.dumps({"messages": [i for _, i in part]}).encode()),
                                False, "mixed batch")  # fmt: skip
            assert "results" in body, body
            results = body["results"]
            assert len(results) == len(part)
            for (f, _), result in zip(part, results):
                assert result["status"] in ("accepted", "rejected"), result
                assert result["status"] == "accepted" or set(result) >= {"error", "detail"}
                assert f.kind not in MUST_FAIL or result["status"] == "rejected", (f.kind, result)
                assert not f.valid or result["status"] == "accepted", result
                item_results[result["status"]] += 1
                if result["status"] == "accepted":
                    tally.accepted.add(result["message_id"])

    assert {f.message_id for f in frames if f.valid} <= tally.accepted
    assert stored_ids(device) == tally.accepted
    assert refusals_since(start) == tally.errors + item_results["rejected"]
    assert still_answers(server)
    figures.record("fuzz", "rest_batch", inputs=tally.errors + len(items), requests=tally.sent,
                   refused=tally.errors + item_results["rejected"], of_which_whole_bodies=tally.errors,
                   accepted=item_results["accepted"], stored=len(stored_ids(device)), kinds=kinds_of(frames))  # fmt: skip


def _compat_bodies(rng: random.Random) -> list[tuple[str, str, bytes, bool]]:
    """(format, content type, body, must fail) for each camera format: mangled samples and noise."""
    out = []
    for fmt, name in [("openalpr", "openalpr_alpr_group.json"), ("openalpr", "openalpr_alpr_results.json"),
                      ("platerecognizer", "platerecognizer_stream.json"), ("hikvision", "hikvision_anpr.xml")]:  # fmt: skip
        raw = (SAMPLES / name).read_bytes()
        content_type = "application/xml" if name.endswith(".xml") else "application/json"
        for _ in range(6):
            out.append((fmt, content_type, raw[: rng.randrange(1, len(raw) - 1)], True))  # truncated
            out.append((fmt, content_type, rng.randbytes(rng.randrange(1, 2000)), True))
            out.append((fmt, "multipart/form-data; boundary=xyz", b"--xyz\r\n" + rng.randbytes(300), True))
            if name.endswith(".json"):
                doc = json.loads(raw)
                target = doc["data"] if "data" in doc else doc
                target[rng.choice(list(target))] = copy.deepcopy(rng.choice(NASTY))
                out.append((fmt, content_type, json.dumps(doc).encode(), False))
                out.append((fmt, content_type, json.dumps(rng.choice([None, [], 7, "x", [doc]])).encode(), True))
            else:
                tags = [b"<licensePlate>", b"<dateTime>", b"<confidenceLevel>", b"<ANPR>", b"<EventNotificationAlert"]
                tag = rng.choice(tags)
                out.append((fmt, content_type, raw.replace(tag, tag + rng.choice([b"\x00", b"&x;", b"<a>", b"]]>"])), False))
                out.append((fmt, content_type, b'<!DOCTYPE a [<!ENTITY x "y">]>' + raw, True))
        out.append((fmt, content_type, raw, False))  # the sample itself, which must go through
    return out


def test_camera_format_endpoints_survive_noise_and_mangled_samples(server, fast_device, figures):
    device, rng, tally = fast_device(), random.Random(13), Tally()
    cases = _compat_bodies(rng)
    start = timezone.now()
    with requests.Session() as session:
        for fmt, content_type, body, must_fail in cases:
            answer = tally.answer(post(session, f"{server.http}/api/v1/compat/{fmt}/", device, body, content_type),
                                  must_fail, f"{fmt} {body[:40]!r}")  # fmt: skip
            for result in answer.get("results", []):
                if result["status"] == "accepted":
                    tally.accepted.add(result["message_id"])

    assert stored_ids(device) == tally.accepted and len(tally.accepted) >= 4  # at least each sample itself
    assert refusals_since(start) == tally.errors
    assert still_answers(server)
    figures.record("fuzz", "rest_compat", inputs=tally.sent, refused=tally.errors, answered_2xx=tally.sent - tally.errors,
                   accepted=len(tally.accepted), stored=len(stored_ids(device)), statuses=tally.statuses)  # fmt: skip
