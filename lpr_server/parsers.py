"""The operator API's parsers (DRF's JSON, form and multipart ones), refusing NUL characters: PostgreSQL cannot
store them, and a lookup with one (a related object's id) fails in the database, which would be a 500."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from devices.storable import contains_nul

DETAIL = "The request contains the NUL character (\\u0000), which cannot be stored."


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if contains_nul(data):
            raise ParseError(DETAIL)
        return data


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if contains_nul(dict(data.lists())):
            raise ParseError(DETAIL)
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        if contains_nul(dict(parsed.data.lists())):
            raise ParseError(DETAIL)
        return parsed
