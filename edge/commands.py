"""Commands and configuration on the camera side (CONTRACT section 6).

Each command is answered with ``control`` envelopes: ``received`` at once,
then ``done`` (with a ``result``) or ``failed`` (with an ``error``), each
carrying ``command_id``. Built in: ``ping``, ``switch_protocol`` (params
``protocol``, optional ``hold_s``) and ``set_config`` (params ``values`` and
optional ``version``, or the values themselves). Other actions go to the
``on_command`` handler; without one they fail as unsupported.

A command can arrive twice (pushed on a realtime channel and redelivered over
MQTT, or polled again); the ids already handled are kept in the outbox's state
table so a restart does not run them again.
"""
from __future__ import annotations

import inspect
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable

from .envelope import utc_timestamp

if TYPE_CHECKING:
    from .client import EdgeClient

log = logging.getLogger(__name__)
SEEN_KEEP = 500


class CommandRunner:
    def __init__(
        self, client: "EdgeClient",
        on_command: Callable[[dict[str, Any]], Any] | None = None,
        on_config: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.client = client
        self.on_command, self.on_config = on_command, on_config
        state = client.outbox
        self.config: dict[str, Any] = state.get_state("config") or {"version": 0, "values": {}}
        self._seen: OrderedDict[str, None] = OrderedDict(
            (str(c), None) for c in state.get_state("seen_commands") or [])

    # -- commands --------------------------------------------------------------
    async def handle(self, command: dict[str, Any]) -> None:
        command_id = command.get("id", command.get("command_id"))
        if command_id is None or self._already_seen(str(command_id)):
            return
        self.client._emit("command", command)
        self.answer(command_id, "received")
        try:
            result = await self._execute(command)
        except Exception as exc:
            log.info("command %s failed: %s", command_id, exc)
            self.answer(command_id, "failed", error=str(exc) or type(exc).__name__)
            return
        self.answer(command_id, "done", result=result)

    def answer(self, command_id: Any, status: str, result: Any = None,
               error: str | None = None) -> str:
        payload: dict[str, Any] = {"command_id": command_id, "status": status}
        if result is not None:
            payload["result"] = result
        if error is not None:
            payload["error"] = error
        return self.client.enqueue("control", payload)

    async def _execute(self, command: dict[str, Any]) -> Any:
        action = command.get("action")
        params = command.get("params") or {}
        if action == "ping":
            return {"pong": True, "at": utc_timestamp(), "transport": self.client.transport}
        if action == "switch_protocol":
            return self._switch_protocol(command, params)
        if action == "set_config":
            values = params.get("values", {k: v for k, v in params.items() if k != "version"})
            merged = {**self.config.get("values", {}), **values}
            return {"version": self.set_config(merged, params.get("version"))}
        if self.on_command is None:
            raise ValueError(f"unsupported action {action!r}")
        result = self.on_command(command)
        return await result if inspect.isawaitable(result) else result

    def _switch_protocol(self, command: dict[str, Any], params: dict[str, Any]) -> Any:
        target = params.get("protocol") or params.get("to")
        before = self.client.transport
        switch = self.client.selector.force(
            str(target), reason=f"command {command.get('id', command.get('command_id'))}",
            hold_s=float(params.get("hold_s", 600)),
        )
        self.client._switched(switch)
        return {"from": before, "to": self.client.transport}

    def _already_seen(self, command_id: str) -> bool:
        if command_id in self._seen:
            return True
        self._seen[command_id] = None
        while len(self._seen) > SEEN_KEEP:
            self._seen.popitem(last=False)
        self.client.outbox.set_state("seen_commands", list(self._seen))
        return False

    # -- configuration ---------------------------------------------------------
    def set_config(self, values: dict[str, Any], version: int | None = None,
                   report: bool = True) -> int:
        """Adopt a configuration, keep it on disk, report it, tell the handler."""
        new_version = int(version) if version is not None else int(self.config["version"]) + 1
        self.config = {"version": new_version, "values": dict(values)}
        self.client.outbox.set_state("config", self.config)
        if report:
            self.report_config()
        if self.on_config is not None:
            try:
                self.on_config(dict(self.config))
            except Exception:
                log.exception("on_config handler failed")
        return new_version

    def apply_desired(self, desired: dict[str, Any]) -> None:
        """Desired config pushed or pulled from the server: adopt it when it differs."""
        version, values = desired.get("version"), desired.get("values")
        if version is None or not isinstance(values, dict):
            return
        if int(version) == self.config.get("version") and values == self.config.get("values"):
            return
        self.set_config(values, int(version))

    def report_config(self) -> str:
        return self.client.enqueue("config", dict(self.config))
