"""Small batches stored by one statement (`lpr_ingest`) store exactly what the set-wise path stores."""

import random
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from detections.models import Detection, Passage
from devices.models import Device, HealthLog
from tests.detections.helpers import T0
from tests.factories import envelope
from transport import one_statement, pipeline, store
from transport.envelope import parse
from transport.models import Message
from transport.pipeline import Inbound

pytestmark = pytest.mark.django_db


def _scenario(rng: random.Random) -> list[list[tuple[int, dict]]]:
    """Batches of (camera number, envelope minus its ids): reads of a few cars with misread variants, health
    reports with firmware, messages sent twice within a batch and again in a later one."""
    cars = ["AB123CD", "XY987ZZ", "KL555MN"]
    misreads = {"AB123CD": ["AB123C0", "A8123CD"], "XY987ZZ": ["XY987Z2"], "KL555MN": ["KL555M"]}
    batches, sent, at = [], [], 0.0
    for _ in range(40):
        batch = []
        for _ in range(rng.randint(1, 4)):
            at += rng.choice([0.3, 1.0, 2.5, 7.0])
            camera = rng.randint(0, 1)
            if rng.random() < 0.2:
                body = {"data_type": "health", "payload": {"cpu_percent": rng.random() * 100,
                                                           "firmware": rng.choice(["1.0", "1.1", ""])}}  # fmt: skip
            else:
                car = rng.choice(cars)
                plate = rng.choice([car, car, *misreads[car]])
                body = {"data_type": "detection", "payload": {"plate": plate, "confidence": round(rng.random(), 2)}}
            body["timestamp"] = (T0 + timedelta(seconds=at)).isoformat()
            batch.append((camera, body, len(sent)))
            sent.append((camera, body, len(sent)))
        if rng.random() < 0.3:
            batch.append(rng.choice(sent))  # sent again: a duplicate, within this batch or of an earlier one
        batches.append(batch)
    return batches


def _run(batches, cameras, path: str, monkeypatch) -> dict:
    monkeypatch.setattr(one_statement, "fits", one_statement.fits if path == "one statement" else lambda items: False)
    ids: dict[int, str] = {}
    acks = []
    for batch in batches:
        items = []
        for camera, body, n in batch:
            env = envelope(cameras[camera].id, body["data_type"], body["payload"], timestamp=body["timestamp"])
            env["message_id"] = ids.setdefault(n, env["message_id"])
            items.append(Inbound(env, cameras[camera], "ws"))
        acks += [a.status for a in pipeline.ingest_batch(items)]
    return _snapshot(cameras, {message_id: n for n, message_id in ids.items()}, acks)


def _snapshot(cameras, number_of: dict[str, int], acks: list[str]) -> dict:
    """What was stored, with ids replaced by the scenario's message numbers, so two runs compare."""
    devices = [c.id for c in cameras]
    reads = Detection.objects.filter(device_id__in=devices).order_by("captured_at")
    passage_of = {}
    for read in reads:
        passage_of.setdefault(read.passage_id, []).append(number_of[str(read.message_id)])
    passages = sorted(
        (devices.index(p.device_id), sorted(passage_of[p.id]), p.read_count, p.first_at, p.last_at,
         number_of[str(p.best_message_id)], p.plate_normalized, p.best_confidence)
        for p in Passage.objects.filter(device_id__in=devices)
    )  # fmt: skip
    return {
        "acks": acks,
        "reads": [(number_of[str(r.message_id)], r.plate, r.plate_normalized, r.search_text, r.confidence,
                   r.received_via) for r in reads],  # fmt: skip
        "passages": passages,
        "health": sorted((number_of[str(h.message_id)], h.cpu_percent, h.firmware)
                         for h in HealthLog.objects.filter(device_id__in=devices)),  # fmt: skip
        "ledger": sorted(number_of[str(m)] for m in Message.objects.filter(device_id__in=devices)
                         .values_list("message_id", flat=True)),  # fmt: skip
        "devices": [(d.last_transport, d.firmware, d.last_seen_at is not None)
                    for d in Device.objects.filter(id__in=devices).order_by("id")],  # fmt: skip
    }


def test_both_paths_store_the_same_rows_for_the_same_messages(make_device, monkeypatch):
    batches = _scenario(random.Random(3))
    first = _run(batches, [make_device(rate_limit_per_s=1e6) for _ in range(2)], "one statement", monkeypatch)
    second = _run(batches, [make_device(rate_limit_per_s=1e6) for _ in range(2)], "set-wise", monkeypatch)

    assert first == second
    assert {"accepted", "duplicate"} == set(first["acks"])
    assert len(first["passages"]) < len(first["reads"])  # reads were grouped, not each a passage of its own
    assert first["health"] and first["devices"][0][0] == "ws"


def test_what_the_function_does_not_take_goes_set_wise(make_device):
    device = make_device()

    def items(*envs):
        return [(device, "ws", parse(e)) for e in envs]

    read, health = envelope(device.id), envelope(device.id, "health")
    assert one_statement.fits(items(read, health))
    assert not one_statement.fits(items(read, envelope(device.id, "config")))
    with_image = envelope(device.id, payload={"plate": "AB123CD", "confidence": 0.9,
                                              "image_ref": "9b2f4c1e-1b7a-4c1e-9a57-3f1d2a6b8c00"})  # fmt: skip
    assert not one_statement.fits(items(read, with_image))
    assert not one_statement.fits(items(*[envelope(device.id) for _ in range(one_statement.MAX_MESSAGES)]))


def _unsaved_device_report() -> list[store.Item]:
    """A read and a health report from a device with no row: the health log's foreign key fails, at the end."""
    ghost = Device(id="GHOST-1", name="ghost")
    read, health = envelope(ghost.id), envelope(ghost.id, "health")
    return [(ghost, "ws", parse(e)) for e in (read, health)]


@pytest.mark.django_db(transaction=True)
def test_a_statement_that_fails_part_way_stores_nothing():
    with pytest.raises(IntegrityError):
        one_statement.write(_unsaved_device_report(), T0)

    assert (Message.objects.count(), Detection.objects.count(), Passage.objects.count()) == (0, 0, 0)


def test_inside_a_callers_transaction_a_failure_does_not_abort_it(device):
    with transaction.atomic():
        with connection.cursor() as cursor:  # the foreign key checked at the statement's end, not at commit
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with pytest.raises(IntegrityError):
            one_statement.write(_unsaved_device_report(), T0)
        assert Device.objects.filter(pk=device.pk).exists()  # the transaction still answers
    assert connection.in_atomic_block  # the test's own transaction, untouched
    assert Message.objects.count() == 0
