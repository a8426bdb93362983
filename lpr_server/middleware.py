"""Requests whose URL carries a NUL character are refused before any view: nothing can look them up or store them."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpResponseBadRequest

from transport.errors import API_PREFIX, error_response

DETAIL = "The URL contains a NUL character (%00)."


class RefuseNulInURL:
    """Sync and async capable, so that it costs an async view no thread hop."""

    sync_capable = async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        return _refusal(request) or self.get_response(request)

    async def _acall(self, request):
        return _refusal(request) or await self.get_response(request)


def _refusal(request):
    query = request.META.get("QUERY_STRING", "")
    if "\x00" not in request.path and not ("%00" in query and b"\x00" in unquote_to_bytes(query)):
        return None
    if request.path.startswith(API_PREFIX):
        return error_response("invalid", DETAIL)
    return HttpResponseBadRequest(DETAIL, content_type="text/plain")
