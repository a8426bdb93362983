"""Commands to cameras: issuing them, handing them out, and recording the camera's answers.

A command moves queued → sent → received → done|failed, or expired after its
TTL; every move is a CommandTransition with its time and transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from .models import Command, CommandTransition, Device

State = Command.State
RANK = {State.QUEUED: 0, State.SENT: 1, State.RECEIVED: 2, State.DONE: 3, State.FAILED: 3, State.EXPIRED: 3}
TERMINAL = {State.DONE, State.FAILED, State.EXPIRED}
DEFAULT_TTL_S = 3600


class CommandError(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Answer:
    """A camera's control payload: how far it got with a command."""

    command_id: UUID
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None


@transaction.atomic
def issue(device: Device, action: str, params: dict | None = None, ttl_s: int = DEFAULT_TTL_S) -> Command:
    now = timezone.now()
    command = Command.objects.create(
        device=device, action=action, params=params or {}, expires_at=now + timedelta(seconds=ttl_s)
    )
    CommandTransition.objects.create(command=command, state=State.QUEUED, at=now)
    return command


def wire_shape(command: Command) -> dict[str, Any]:
    """The command as a camera receives it, on every transport."""
    return {
        "id": str(command.id),
        "action": command.action,
        "params": command.params,
        "expires_at": command.expires_at.isoformat(),
    }


def pending_for(device: Device, now: datetime | None = None) -> list[Command]:
    """Commands the camera has not yet confirmed receiving and that have not expired."""
    now = now or timezone.now()
    return list(
        Command.objects.filter(device=device, state__in=[State.QUEUED, State.SENT], expires_at__gt=now).order_by(
            "created_at"
        )
    )


@transaction.atomic
def mark_sent(commands: Iterable[Command], transport: str) -> None:
    now = timezone.now()
    commands = list(commands)
    ids = [c.id for c in commands]
    Command.objects.filter(id__in=ids, state=State.QUEUED).update(state=State.SENT)
    CommandTransition.objects.bulk_create(
        CommandTransition(command_id=c.id, state=State.SENT, at=now, transport=transport)
        for c in commands
        if c.state == State.QUEUED
    )
    for c in commands:
        if c.state == State.QUEUED:
            c.state = State.SENT


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
        if command.state in TERMINAL or RANK[answer.status] <= RANK[command.state]:
            continue
        command.state = answer.status
        command.result = answer.result if answer.result is not None else command.result
        command.error = answer.error or command.error
        command.save(update_fields=["state", "result", "error"])
        transitions.append(CommandTransition(command=command, state=answer.status, at=now, transport=transport))
    CommandTransition.objects.bulk_create(transitions)
    return refused
