"""Daphne as `serve` runs it: its access log redacted, request bodies left to Django, no body past a bound read.

Twisted, under Daphne, parses every POST body sent as a form (url-encoded or
multipart) into `request.args`, which Daphne never reads: Django parses
bodies itself. So an image upload was parsed twice, the first time whole in
memory, a multipart body Twisted could not parse was refused with a bare
400 before Django and its error format saw it, and every POST paid ~30 µs
for the Content-Type to be read through the email package.

Daphne also reads a whole body before the application sees it, whatever its
size (spooled to disk past a few hundred kilobytes). A body longer than
HTTP_MAX_BODY_BYTES, the most any endpoint takes, is refused as it is
announced (or, chunked, as it passes the bound) with the contract's 413,
and the connection closed: behind nginx its `client_max_body_size` does
this first; served directly (the run command), this does.
"""

from __future__ import annotations

import logging

from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server
from django.conf import settings

from transport.errors import error_response

from .access_log import RedactingAccessLog

log = logging.getLogger(__name__)


class _Request(WebRequest):
    def __init__(self, channel, *args, **kwargs):
        super().__init__(channel, *args, parsePOSTFormSubmission=False, **kwargs)
        self.body_received, self.refused = 0, False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > settings.HTTP_MAX_BODY_BYTES:
            self._refuse_too_large(length)
        super().gotLength(0 if self.refused else length)  # 0: an empty buffer, not a spool file

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.body_received += len(data)
        if self.body_received > settings.HTTP_MAX_BODY_BYTES:  # chunked: no length was announced
            self._refuse_too_large(self.body_received, "at least ")
            return
        super().handleContentChunk(data)

    def _refuse_too_large(self, length: int, qualifier: str = "") -> None:
        self.refused = True
        limit = settings.HTTP_MAX_BODY_BYTES
        answer = error_response("too_large", f"Body is {qualifier}{length} bytes; no endpoint takes more than {limit}.")
        log.warning(
            "refused a %s%d-byte body from %s before reading it", qualifier, length, getattr(self.client, "host", "?")
        )
        self.channel.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (answer.status_code, answer.reason_phrase.encode(), answer["Content-Type"].encode(), len(answer.content),
               answer.content)
        )  # fmt: skip
        self.channel.loseConnection()


class _HTTPFactory(HTTPFactory):
    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = _Request
        return protocol


class _Server(Server):
    def __init__(self, *args, action_logger=None, **kwargs):
        if isinstance(action_logger, AccessLogGenerator) and not isinstance(action_logger, RedactingAccessLog):
            action_logger = RedactingAccessLog(action_logger.stream)
        super().__init__(*args, action_logger=action_logger, **kwargs)

    # Server.run() makes its HTTP factory itself, as Daphne's class; it gets ours instead.
    @property
    def http_factory(self) -> HTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        self._http_factory = factory if isinstance(factory, _HTTPFactory) else _HTTPFactory(self)


class DaphneCLI(CommandLineInterface):
    """Daphne's command line, serving with `_Server`."""

    server_class = _Server
