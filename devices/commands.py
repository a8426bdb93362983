"""Commands to cameras: issuing them, delivering them over the best channel, and recording the answers.

A command moves queued → sent → received → done|failed, or expired after its
TTL; every move is a CommandTransition with its time and transport. A `sent`
transition is also recorded for each re-send (detail "re-sent").

Why nothing is lost or stuck: the command row is committed before any push;
`deliver` marks it sent only once a channel took the bytes, and `sweep` (run
by `manage.py run_device_watch` every second) delivers queued commands of
devices that came back, re-sends `sent` commands left unanswered for
COMMAND_ACK_TIMEOUT_S (after a restart too), and expires those past their
TTL. Until it is answered, a command is also handed out on each REST poll.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from . import channels
from .models import Command, CommandTransition, Device
from .storable import contains_nul

State = Command.State
RANK = {State.QUEUED: 0, State.SENT: 1, State.RECEIVED: 2, State.DONE: 3, State.FAILED: 3, State.EXPIRED: 3}
TERMINAL = {State.DONE, State.FAILED, State.EXPIRED}
ANSWERS = {State.RECEIVED, State.DONE, State.FAILED}
OPEN = [State.QUEUED, State.SENT]
DEFAULT_TTL_S = 3600
MAX_TTL_S = 7 * 24 * 3600
KNOWN_ACTIONS = ("ping", "capture", "reboot", "switch_protocol", "set_config")
_ACTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class CommandError(Exception):
    def __init__(self, code: str, detail: str, field: str | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field


@dataclass(frozen=True, slots=True)
class Answer:
    """A camera's control payload: how far it got with a command."""

    command_id: UUID
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None


def check_request(action: Any, params: Any, ttl_s: Any, min_ttl_s: int = 1) -> None:
    """Refuse a command an operator should not be able to queue, with the field at fault."""
    if not isinstance(action, str) or not _ACTION.match(action):
        raise CommandError("invalid", "action must be a word of letters, digits, '_', '.', ':' or '-'.", "action")
    if not isinstance(params, dict):
        raise CommandError("invalid", "params must be a JSON object.", "params")
    if contains_nul(params):
        raise CommandError("invalid", "params may not contain the NUL character (\\u0000).", "params")
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not min_ttl_s <= ttl_s <= MAX_TTL_S:
        raise CommandError("invalid", f"ttl_s must be a whole number of seconds, {min_ttl_s} to {MAX_TTL_S}.", "ttl_s")
    if action == "switch_protocol" and params.get("protocol") not in ("websocket", "socketio", "rest", "mqtt"):
        raise CommandError("invalid", "switch_protocol needs params.protocol: websocket, socketio, rest or mqtt.", "params")


@transaction.atomic
def issue(device: Device, action: str, params: dict | None = None, ttl_s: int = DEFAULT_TTL_S) -> Command:
    """Store a queued command (no delivery; see `send`)."""
    params = {} if params is None else params
    check_request(action, params, ttl_s, min_ttl_s=0)  # 0: already expired, which tests of expiry need
    now = timezone.now()
    command = Command.objects.create(
        device=device, action=action, params=params, expires_at=now + timedelta(seconds=ttl_s)
    )
    CommandTransition.objects.create(command=command, state=State.QUEUED, at=now)
    channels.announce("command", command)
    return command


def send(device_id: str, action: str, params: dict | None = None, ttl_s: int = DEFAULT_TTL_S) -> Command:
    """Issue a command and deliver it once committed: what the admin and the operator API call."""
    device = Device.objects.filter(pk=device_id).first()
    if device is None:
        raise CommandError("not_found", f"No device {device_id!r}.", "device")
    command = issue(device, action, params, ttl_s)
    transaction.on_commit(lambda: deliver(command))
    return command


def wire_shape(command: Command) -> dict[str, Any]:
    """The command as a camera receives it, on every transport."""
    return {
        "id": str(command.id),
        "action": command.action,
        "params": command.params,
        "expires_at": command.expires_at.isoformat(),
    }


def deliver(command: Command) -> str | None:
    """Push a command over the device's best live channel, falling through to the next when one fails.

    Returns the transport that took it, or None: then it waits for the REST
    poll (or for the device to come back, see `sweep`). A command already
    answered or past its TTL is never pushed.
    """
    command.refresh_from_db(fields=["state", "expires_at"])
    if command.state not in OPEN:
        return None
    if command.expires_at <= timezone.now():
        expire_due([command.id])
        return None
    device = Device.objects.get(pk=command.device_id)  # fresh: its MQTT status decides a route
    started = timezone.now()
    transport = channels.push(device, "command", {"command": wire_shape(command)})
    if transport is not None:
        mark_sent([command], transport, at=started)
    return transport


def pending_for(device: Device, now: datetime | None = None, resend_all: bool = False) -> list[Command]:
    """Commands to hand the camera: queued ones, and sent ones it has not confirmed within COMMAND_ACK_TIMEOUT_S.

    `resend_all` also includes sent ones just sent (the camera has just come back). Expired ones never.
    A camera long-polling is thus not answered at once, again and again, with a command it is still working on.
    """
    now = now or timezone.now()
    due = Q(state__in=OPEN) if resend_all else _due(now)
    return list(Command.objects.filter(due, device=device, expires_at__gt=now).order_by("created_at"))


def _due(now: datetime) -> Q:
    """Queued, or sent and unanswered for COMMAND_ACK_TIMEOUT_S."""
    resend_before = now - timedelta(seconds=settings.COMMAND_ACK_TIMEOUT_S)
    return Q(state=State.QUEUED) | Q(state=State.SENT) & (Q(last_sent_at__lte=resend_before) | Q(last_sent_at=None))


@transaction.atomic
def mark_sent(commands: Iterable[Command], transport: str, at: datetime | None = None) -> None:
    """Record that `commands` went out over `transport` at `at` (taken before the push, so the order holds
    even when the camera's answer beats this write)."""
    at = at or timezone.now()
    commands = list(commands)
    ids = [c.id for c in commands]
    if not ids:
        return
    # Locked: an answer arriving meanwhile (apply_answers locks too) waits, then moves the row forward.
    states = dict(Command.objects.select_for_update().filter(id__in=ids).values_list("id", "state"))
    moved = {i for i, state in states.items() if state == State.QUEUED}
    Command.objects.filter(id__in=ids).update(attempts=F("attempts") + 1, last_sent_at=at)
    Command.objects.filter(id__in=moved).update(state=State.SENT)
    CommandTransition.objects.bulk_create(
        CommandTransition(command_id=c.id, state=State.SENT, at=at, transport=transport,
                          detail="re-sent" if states.get(c.id) == State.SENT else "")  # fmt: skip
        for c in commands
    )
    for c in commands:
        if c.id in moved:
            c.state = State.SENT
            channels.announce("command", c, transport=transport)


def apply_answers(device_id: str, answers: list[Answer], transport: str) -> dict[UUID, CommandError]:
    """Record answers in the caller's transaction; return the ones refused, by command id.

    Answers may arrive out of order across transports ("received" over MQTT
    after "done" over REST): a move backwards is accepted and changes nothing.
    """
    commands = Command.objects.select_for_update().in_bulk([a.command_id for a in answers])
    refused: dict[UUID, CommandError] = {}
    now = timezone.now()
    transitions = []
    for answer in answers:
        command = commands.get(answer.command_id)
        if command is None or command.device_id != device_id:
            refused[answer.command_id] = CommandError("invalid", f"No command {answer.command_id} for device {device_id}.")
            continue
        if answer.status not in ANSWERS:
            refused[answer.command_id] = CommandError("invalid", f"{answer.status!r} is not received, done or failed.")
            continue
        if command.state in TERMINAL or RANK[answer.status] <= RANK[command.state]:
            continue
        command.state = answer.status
        command.result = answer.result if answer.result is not None else command.result
        command.error = answer.error or command.error
        command.save(update_fields=["state", "result", "error"])
        transitions.append(CommandTransition(command=command, state=answer.status, at=now, transport=transport))
        channels.announce("command", command, transport=transport)
    CommandTransition.objects.bulk_create(transitions)
    return refused


@transaction.atomic
def expire_due(ids: Iterable[UUID] | None = None, now: datetime | None = None) -> int:
    """Expire open commands past their TTL (all of them, or those among `ids`); returns how many."""
    now = now or timezone.now()
    due = Command.objects.select_for_update(skip_locked=True).filter(state__in=OPEN, expires_at__lte=now)
    if ids is not None:
        due = due.filter(id__in=list(ids))
    expired = list(due)
    Command.objects.filter(id__in=[c.id for c in expired]).update(state=State.EXPIRED)
    CommandTransition.objects.bulk_create(
        CommandTransition(command=c, state=State.EXPIRED, at=now, detail="TTL passed") for c in expired
    )
    for c in expired:
        c.state = State.EXPIRED
        channels.announce("command", c)
    return len(expired)


def deliver_pending(device: Device) -> int:
    """Push every open command of a device (it has just come back); returns how many went out."""
    return sum(deliver(c) is not None for c in pending_for(device, resend_all=True))


def sweep(now: datetime | None = None) -> dict[str, int]:
    """One pass of the restart-safe delivery loop: expire, then deliver queued and re-send unanswered commands.

    Devices are looked up once each, so many commands waiting for offline devices cost one presence check per device.
    """
    now = now or timezone.now()
    expired = expire_due(now=now)
    due = Command.objects.filter(_due(now), expires_at__gt=now)
    device_ids = list(due.order_by().values_list("device_id", flat=True).distinct()[: settings.COMMAND_SWEEP_BATCH])
    sent = 0
    for device in Device.objects.filter(id__in=device_ids):
        if channels.routes(device, "command"):
            sent += sum(deliver(c) is not None for c in due.filter(device=device).order_by("created_at"))
    return {"expired": expired, "sent": sent}
