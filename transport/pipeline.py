"""The one write path for camera data, whatever transport brought it.

    (authenticate what came with credentials only) → throttle →
    parse and validate (transport.envelope) → one transaction (a small batch: one
    statement, transport.one_statement):
    ledger insert (ON CONFLICT DO NOTHING decides duplicates) → domain rows in
    bulk → on commit: announce to live dashboards and alert matching.

Adapters call `ingest` (one message) or `ingest_batch` (many, possibly from
many devices, as the MQTT bridge does) and send back the `Ack`s. Most
adapters authenticate their device themselves (a connection does once); a
REST request hands over its `Credentials` instead, so that the requests
committed together are also authenticated together, with one query.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

import msgspec
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from devices import credentials
from devices.models import Device

from . import announce, auth, envelope, metrics, one_statement, store
from .envelope import Envelope, EnvelopeError
from .models import RejectedMessage
from .throttle import limiter

log = logging.getLogger(__name__)

ACCEPTED, DUPLICATE, REJECTED, THROTTLED, UNAVAILABLE = "accepted", "duplicate", "rejected", "throttled", "unavailable"
UNAVAILABLE_RETRY_S = 5
# What storage out of reach raises (server down, connection lost): the answer is `unavailable`, not a failure.
STORAGE_DOWN = (OperationalError, InterfaceError)


class Inbound(msgspec.Struct, gc=False):
    """One message as a transport received it."""

    body: bytes | str | dict
    device: Device | None  # None: not authenticated yet, by `credentials`
    via: str
    topic_data_type: str | None = None  # MQTT: the data type named by the topic
    credentials: auth.Credentials | None = None


class Ack(msgspec.Struct, gc=False):
    message_id: str | None
    status: str
    error: str | None = None
    detail: str | None = None
    field: str | None = None
    retry_after: int | None = None
    credentials_refused: bool = False  # the request's credentials were refused (REST answers it as a whole)

    def as_dict(self) -> dict[str, Any]:
        """The contract's ack object (WebSocket, Socket.IO, MQTT `down/ack`)."""
        out: dict[str, Any] = {"type": "ack", "message_id": self.message_id, "status": self.status}
        for name in ("error", "detail", "field", "retry_after"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


class _Pending(msgspec.Struct, gc=False):
    index: int
    item: Inbound
    envelope: Envelope


@dataclass(slots=True)
class _Batch:
    items: Sequence[Inbound]
    received_at: datetime
    acks: list[Ack | None] = field(default_factory=list)
    rejects: list[RejectedMessage] = field(default_factory=list)

    def reject(self, index: int, exc: EnvelopeError | store.StorageRefusal, message_id: str | None = None) -> None:
        item = self.items[index]
        message_id = getattr(exc, "message_id", None) or message_id or envelope.message_id_of(item.body)
        self.acks[index] = Ack(message_id, REJECTED, exc.code, exc.detail, getattr(exc, "field", None))
        self.rejects.append(_rejected(item.via, exc.code, exc.detail, item.body, item.device, message_id))


def ingest(body: bytes | str | dict, device: Device, via: str) -> Ack:
    return ingest_batch([Inbound(body, device, via)])[0]


def ingest_batch(items: Sequence[Inbound]) -> list[Ack]:
    batch = _Batch(items, timezone.now(), [None] * len(items))
    _authenticate(batch)
    _throttle(batch)
    pending = _parse(batch)
    if pending:
        _store(batch, pending)
    _record_rejects(batch.rejects)
    acks: list[Ack] = batch.acks  # type: ignore[assignment]  # every slot is filled by now
    metrics.count_acks(items, acks)
    return acks


def _authenticate(batch: _Batch) -> None:
    """Devices for the items that came with credentials; a refused request is answered and recorded once."""
    claims = {id(item.credentials): item.credentials for item in batch.items if item.device is None}
    if not claims:
        return
    try:
        found = dict(zip(claims, auth.authenticate_all(list(claims.values()))))
    except STORAGE_DOWN:
        found = {}  # storage is down: _store answers `unavailable`, after nothing else
    recorded: set[int] = set()
    for i, item in enumerate(batch.items):
        result = found.get(id(item.credentials))
        if isinstance(result, Device):
            item.device = result
        elif isinstance(result, auth.AuthError):
            batch.acks[i] = Ack(envelope.message_id_of(item.body), REJECTED, result.code, result.detail,
                                credentials_refused=True)  # fmt: skip
            if id(item.credentials) not in recorded:  # one record per refused request, quoting what it sent
                recorded.add(id(item.credentials))
                batch.rejects.append(_rejected(item.via, result.code, result.detail, item.credentials.body))
        elif item.device is None:
            batch.acks[i] = _unavailable(envelope.message_id_of(item.body))


def _throttle(batch: _Batch) -> None:
    per_device: dict[str, list[int]] = {}
    for i, item in enumerate(batch.items):
        if batch.acks[i] is None:
            per_device.setdefault(item.device.id, []).append(i)
    for indexes in per_device.values():
        device = batch.items[indexes[0]].device
        if batch.items[indexes[0]].via == "rest":  # one request: refused whole, with one 429
            granted, wait = 0, limiter.take(device.id, len(indexes), device.rate_limit_per_s)
        else:  # frames a real-time writer or the bridge happened to batch: those that fit go through
            granted, wait = limiter.take_some(device.id, len(indexes), device.rate_limit_per_s)
        if wait:
            retry_after = max(1, round(wait + 0.5))
            for i in indexes[granted:]:
                batch.acks[i] = Ack(
                    envelope.message_id_of(batch.items[i].body),
                    THROTTLED,
                    "throttled",
                    f"Device {device.id} is over its rate; resend after {retry_after} s.",
                    retry_after=retry_after,
                )


def _parse(batch: _Batch) -> list[_Pending]:
    pending: list[_Pending] = []
    for i, item in enumerate(batch.items):
        if batch.acks[i] is not None:
            continue
        try:
            env = envelope.parse(item.body, lambda d=item.device: credentials.payload_key(d), batch.received_at)
            _check_claims(env, item)
        except EnvelopeError as exc:
            batch.reject(i, exc)
            continue
        pending.append(_Pending(i, item, env))
    return pending


def _check_claims(env: Envelope, item: Inbound) -> None:
    if env.device_id != item.device.id:
        raise EnvelopeError(
            "forbidden",
            f"edge_device_id {env.device_id!r} is not the authenticated device {item.device.id!r}.",
            "edge_device_id",
            env.id_text,
        )
    if item.topic_data_type and item.topic_data_type != env.data_type:
        raise EnvelopeError(
            "invalid",
            f"The topic says {item.topic_data_type!r} but data_type is {env.data_type!r}.",
            "data_type",
            env.id_text,
        )


def _store(batch: _Batch, pending: list[_Pending]) -> None:
    try:
        outcome = _write([(p.item.device, p.item.via, p.envelope) for p in pending], batch.received_at)
    except STORAGE_DOWN as exc:
        log.warning("storage unavailable, %d message(s) not stored: %s", len(pending), exc)
        for p in pending:
            batch.acks[p.index] = _unavailable(p.envelope.id_text)
        return
    for n, p in enumerate(pending):
        refusal = outcome.refused.get(n)
        if refusal:
            batch.reject(p.index, refusal, p.envelope.id_text)
        else:
            status = ACCEPTED if n in outcome.inserted else DUPLICATE
            batch.acks[p.index] = Ack(p.envelope.id_text, status)


def _write(items: list[store.Item], received_at: datetime) -> store.Outcome:
    if one_statement.fits(items):
        outcome = one_statement.write(items, received_at)
    else:
        with transaction.atomic():
            outcome = store.write(items, received_at)
    # Committed by now, unless a caller's transaction is open: then when that one commits.
    transaction.on_commit(lambda: announce.stored(outcome.stored))
    return outcome


def _unavailable(message_id: str | None) -> Ack:
    return Ack(message_id, UNAVAILABLE, "unavailable", "Storage is unavailable; resend later.",
               retry_after=UNAVAILABLE_RETRY_S)  # fmt: skip


def record_refusal(via: str, code: str, detail: str, body: bytes | str = b"", device: Device | None = None) -> None:
    """Record input refused before it reached the pipeline (bad credentials, oversize body)."""
    _record_rejects([_rejected(via, code, detail, body, device)])
    metrics.count_refusal(via)


def _rejected(via: str, code: str, detail: str, body: bytes | str | dict, device: Device | None = None,
              message_id: str | None = None) -> RejectedMessage:  # fmt: skip
    if message_id is None and body:
        message_id = envelope.message_id_of(body)
    return RejectedMessage(device=device, transport=via, error=code, detail=detail[:500],
                           message_id=(message_id or "")[:64], excerpt=_excerpt(body))  # fmt: skip


def _record_rejects(rejects: list[RejectedMessage]) -> None:
    if not rejects:
        return
    for r in rejects:  # they quote what was sent, and PostgreSQL text cannot hold NUL
        r.detail, r.message_id = r.detail.replace("\x00", "\ufffd"), r.message_id.replace("\x00", "\ufffd")
    try:
        RejectedMessage.objects.bulk_create(rejects)
    except STORAGE_DOWN as exc:
        log.warning("could not record %d rejected message(s): %s", len(rejects), exc)


def _excerpt(body: bytes | str | dict) -> str:
    if isinstance(body, dict):
        body = envelope.encode_json(body)
    if isinstance(body, bytes):
        body = body[: RejectedMessage.EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    # PostgreSQL text cannot hold NUL, which binary input (an image, a fuzzed frame) is full of.
    return body[: RejectedMessage.EXCERPT_CHARS].replace("\x00", "\ufffd")
