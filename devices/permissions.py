"""Who may do what, for people: operators watch and command devices, staff also manage them.

An operator is a staff member, a superuser, or a member of the `operators`
group (devices/groups.py). Anyone else, even signed in, sees no camera data.
The dashboard, the operator API, camera images and live sockets all ask `is_operator`.
"""

from __future__ import annotations

from rest_framework import permissions

from .groups import OPERATORS


def is_operator(user) -> bool:
    if not (user and user.is_authenticated and user.is_active):
        return False
    return bool(user.is_staff or user.is_superuser or user.groups.filter(name=OPERATORS).exists())


class IsOperator(permissions.IsAuthenticated):
    """The operator API's default: anonymous → 401, signed in but not an operator → 403."""

    message = "The operator API is for operators and staff."

    def has_permission(self, request, view) -> bool:
        return super().has_permission(request, view) and is_operator(request.user)


class IsStaff(IsOperator):
    message = "Only staff may do this."

    def has_permission(self, request, view) -> bool:
        return super().has_permission(request, view) and request.user.is_staff


class CanSendCommands(IsOperator):
    message = "Sending commands needs staff or the operators group."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return super().has_permission(request, view) and (user.is_staff or user.has_perm("devices.add_command"))


class StaffWrites(IsOperator):
    """Operators read; only staff change."""

    message = "Only staff may change this."

    def has_permission(self, request, view) -> bool:
        ok = super().has_permission(request, view)
        return ok and (request.method in permissions.SAFE_METHODS or request.user.is_staff)
