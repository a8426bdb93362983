"""Who may see the dashboard: operators (devices/permissions.py): staff, superusers, the `operators` group."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from devices.permissions import is_operator


def operator_required(view):
    """Anonymous visitors go to the login page; signed-in people who are not operators get 403."""

    @login_required
    @wraps(view)
    def guarded(request, *args, **kwargs):
        if not is_operator(request.user):
            raise PermissionDenied("The dashboard is for operators and staff.")
        return view(request, *args, **kwargs)

    return guarded
