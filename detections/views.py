"""Serving stored camera images to people: operators only (devices/permissions.py)."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.settings import api_settings

from devices.permissions import is_operator
from transport.errors import error_response

from .models import Image


def image(request: HttpRequest, image_id, thumbnail: bool = False) -> HttpResponse:
    user = _user(request)
    if not user.is_authenticated:
        return _anonymous(request)
    if not is_operator(user):
        return error_response("forbidden", "Camera images are for operators and staff.")
    img = get_object_or_404(Image, pk=image_id)
    field = img.thumbnail if thumbnail else img.file
    if not field:
        raise Http404("This image has no thumbnail.")
    content_type = "image/jpeg" if thumbnail else img.content_type
    response = FileResponse(field.open("rb"), content_type=content_type)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _user(request: HttpRequest):
    """A dashboard session's user, or the operator API's own credentials (token, Basic) for scripts."""
    if request.user.is_authenticated:
        return request.user
    api = Request(request, authenticators=[auth() for auth in api_settings.DEFAULT_AUTHENTICATION_CLASSES])
    try:
        return api.user
    except APIException:
        return AnonymousUser()


def _anonymous(request: HttpRequest) -> HttpResponse:
    """A browser goes to the login page; a script gets the API's 401."""
    if "text/html" in request.headers.get("Accept", ""):
        return redirect_to_login(request.get_full_path())
    return error_response("unauthenticated", "Log in to see camera images.")
