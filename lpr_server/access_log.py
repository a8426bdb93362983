"""Daphne's access log without credentials.

Compat cameras put their key in the query string (`?key=`) and cameras may
put their JWT there (`/ws/device/?token=`); Daphne logs the request line as
it came. `serve --access-log` runs Daphne with this logger (lpr_server.web_server), which masks them.
"""

from __future__ import annotations

import re

from daphne.access import AccessLogGenerator

CREDENTIAL_PARAMS = re.compile(r"(?i)([?&;](?:key|token|access_token|password|secret)=)[^&;#\s\"]*")


def redact(path: str) -> str:
    return CREDENTIAL_PARAMS.sub(r"\1[redacted]", path)


class RedactingAccessLog(AccessLogGenerator):
    def __call__(self, protocol, action, details):
        if "path" in details:
            details = {**details, "path": redact(str(details["path"]))}
        super().__call__(protocol, action, details)
