"""From mapped envelopes to the pipeline: pictures checked and stored, envelopes ingested, leftovers removed.

Every picture is checked before anything is written, so a bad one refuses
the whole request with nothing stored. Pictures of an envelope the pipeline
does not accept (a resent webhook is a duplicate) are deleted again.
"""

from __future__ import annotations

from detections import images
from detections.models import Image
from devices.models import Device
from transport import envelope, pipeline

from .common import CompatError, Mapped


def deliver(mapped: list[Mapped], device: Device) -> list[pipeline.Ack]:
    checked = [[_check(p.data, p.kind, p.name) for p in m.pictures] for m in mapped]
    stored: list[list[Image]] = []
    for m, pictures in zip(mapped, checked):
        saved = [images.store(device, c) for c in pictures]
        stored.append(saved)
        if saved:
            m.envelope["payload"]["image_ref"] = str(saved[0].id)
            m.envelope["payload"]["images"] = [{"kind": i.kind, "image_ref": str(i.id)} for i in saved]
    acks = pipeline.ingest_batch([pipeline.Inbound(envelope.encode_json(m.envelope), device, "rest") for m in mapped])
    unused = [img for ack, saved in zip(acks, stored) if ack.status != pipeline.ACCEPTED for img in saved]
    if unused:
        images.delete(unused)
    return acks


def _check(data: bytes, kind: str, name: str) -> images.Checked:
    try:
        return images.check(data, kind)
    except images.ImageRejected as exc:
        raise CompatError(f"Picture {name or kind}: {exc.detail}", name or "image", exc.code) from None
