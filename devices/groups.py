"""The `operators` group: people who watch devices and send them commands, but do not manage them."""

from __future__ import annotations

from django.apps import apps as current_apps

OPERATORS = "operators"
OPERATOR_PERMISSIONS = [
    "view_device", "view_healthlog", "view_reportedconfig", "view_command", "add_command",
    "view_commandtransition", "view_protocolswitch", "view_presencechange",
]  # fmt: skip


def ensure_operators_group(apps=current_apps):
    """Create the group with its permissions (idempotent); `apps` is a migration's historical registry there."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=OPERATORS)
    group.permissions.add(*Permission.objects.filter(content_type__app_label="devices", codename__in=OPERATOR_PERMISSIONS))
    return group
