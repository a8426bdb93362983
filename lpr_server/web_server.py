"""Daphne as `serve` runs it: its access log redacted, request bodies left to Django.

Twisted, under Daphne, parses every POST body sent as a form (url-encoded or
multipart) into `request.args`, which Daphne never reads: Django parses
bodies itself. So an image upload was parsed twice, the first time whole in
memory, a multipart body Twisted could not parse was refused with a bare
400 before Django and its error format saw it, and every POST paid ~30 µs
for the Content-Type to be read through the email package.
"""

from __future__ import annotations

from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server

from .access_log import RedactingAccessLog


class _Request(WebRequest):
    def __init__(self, channel, *args, **kwargs):
        super().__init__(channel, *args, parsePOSTFormSubmission=False, **kwargs)


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
