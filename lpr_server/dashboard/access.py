"""Who may see the dashboard: staff and members of the `operators` group (devices/groups.py)."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from devices.groups import OPERATORS


def is_operator(user) -> bool:
    return bool(user.is_active and (user.is_staff or user.is_superuser or user.groups.filter(name=OPERATORS).exists()))


def operator_required(view):
    """Anonymous visitors go to the login page; signed-in people who are not operators get 403."""

    @login_required
    @wraps(view)
    def guarded(request, *args, **kwargs):
        if not is_operator(request.user):
            raise PermissionDenied("The dashboard is for operators and staff.")
        return view(request, *args, **kwargs)

    return guarded
