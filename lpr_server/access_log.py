"""Daphne's access log without credentials.

Compat cameras put their key in the query string (`?key=`) and cameras may
put their JWT there (`/ws/device/?token=`); Daphne logs the request line as
it came. `serve --access-log` runs Daphne with this logger, which masks them.
"""

from __future__ import annotations

import re

from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.server import Server

CREDENTIAL_PARAMS = re.compile(r"(?i)([?&;](?:key|token|access_token|password|secret)=)[^&;#\s\"]*")


def redact(path: str) -> str:
    return CREDENTIAL_PARAMS.sub(r"\1[redacted]", path)


class RedactingAccessLog(AccessLogGenerator):
    def __call__(self, protocol, action, details):
        if "path" in details:
            details = {**details, "path": redact(str(details["path"]))}
        super().__call__(protocol, action, details)


class _Server(Server):
    def __init__(self, *args, action_logger=None, **kwargs):
        if isinstance(action_logger, AccessLogGenerator) and not isinstance(action_logger, RedactingAccessLog):
            action_logger = RedactingAccessLog(action_logger.stream)
        super().__init__(*args, action_logger=action_logger, **kwargs)


class DaphneCLI(CommandLineInterface):
    """Daphne's command line, its access log redacted."""

    server_class = _Server
