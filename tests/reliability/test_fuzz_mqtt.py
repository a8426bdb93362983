"""MQTT through a real bridge: random and truncated payloads, wrong types, huge payloads, bad topics and statuses.

Every envelope from a known device is answered on `down/ack` (refusals as
`rejected`), everything refused is recorded, the database gains exactly what
was acked `accepted`, and the bridge process keeps bridging.
"""

from __future__ import annotations

import random
import uuid

import pytest
from django.utils import timezone

from tests.factories import envelope
from tests.mqtt.conftest import Camera
from transport.envelope import message_id_of
from transport.models import Message, RejectedMessage

from .conftest import wait_until
from .frames import KINDS, corpus, kinds_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MUST_FAIL = (set(KINDS) - {"wrong_type", "deep"}) | {"pinned"}


def test_the_bridge_answers_and_records_every_bad_message_and_keeps_bridging(mqtt_bridge, fast_device, figures):
    (broker, bridge), rng = mqtt_bridge, random.Random(31)
    device = fast_device()
    frames = corpus(rng, device.id, 200, "mqtt")
    frames[0].body = b"{" + b" " * (2 << 20) + b"}"  # 2 MiB: over the envelope limit by far
    frames[0].kind = "huge"
    camera = Camera(device.id, broker.port).connect()
    start = timezone.now()

    for frame in frames:
        camera.publish(frame.body, "detection").wait_for_publish(10)
    for junk in ["1", "nonsense", "{}"]:  # a status payload must be online or offline
        camera.publish(junk.encode(), topic=f"{camera.root}/status")
    mismatched = [envelope(device.id, protocol="mqtt") for _ in range(5)]
    for env in mismatched:  # the topic names another data type than the envelope
        camera.publish(env, "health")
    stranger = f"UNKNOWN{uuid.uuid4().hex[:6]}"
    for _ in range(3):
        camera.publish(envelope(stranger, protocol="mqtt"), topic=f"lpr/v1/devices/{stranger}/up/detection")

    answered = len(frames) + len(mismatched)
    wait_until(lambda: len(camera.ack_list) >= answered, 60, what=f"{answered} acks")
    after = envelope(device.id, protocol="mqtt")
    camera.publish(after)
    assert camera.wait_ack(after["message_id"])["status"] == "accepted"  # still bridging
    camera.close()

    acks = camera.ack_list[:answered]
    accepted = {a["message_id"] for a in acks if a["status"] == "accepted"}
    rejected = [a for a in acks if a["status"] == "rejected"]
    assert len(accepted) + len(rejected) == answered and all(a.get("error") and a.get("detail") for a in rejected)
    assert {f.message_id for f in frames if f.valid} <= accepted
    must_fail = {message_id_of(f.body) for f in frames if f.kind in MUST_FAIL} | {e["message_id"] for e in mismatched}
    assert not accepted & must_fail
    stored = {str(i) for i in Message.objects.filter(device=device).values_list("message_id", flat=True)}
    assert stored == accepted | {after["message_id"]}
    status_refusals = 3
    recorded = wait_until(lambda: RejectedMessage.objects.filter(transport="mqtt", received_at__gte=start).count()
                          >= len(rejected) + status_refusals + 3, 10, what="every refusal recorded")  # fmt: skip
    assert RejectedMessage.objects.filter(transport="mqtt", received_at__gte=start).count() == \
        len(rejected) + status_refusals + 3  # fmt: skip
    assert bridge.proc.poll() is None and "Traceback" not in bridge.log()
    figures.record("fuzz", "mqtt", inputs=answered + status_refusals + 3 + 1, refused=len(rejected) + status_refusals + 3,
                   of_which_unanswered=status_refusals + 3, accepted=len(accepted) + 1, stored=len(stored),
                   kinds=kinds_of(frames))  # fmt: skip
    assert recorded
