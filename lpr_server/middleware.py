"""Requests whose URL carries a NUL character are refused before any view: nothing can look them up or store them."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from django.http import HttpResponseBadRequest

from transport.errors import API_PREFIX, error_response


class RefuseNulInURL:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or ("%00" in query and b"\x00" in unquote_to_bytes(query)):
            detail = "The URL contains a NUL character (%00)."
            if request.path.startswith(API_PREFIX):
                return error_response("invalid", detail)
            return HttpResponseBadRequest(detail, content_type="text/plain")
        return self.get_response(request)
