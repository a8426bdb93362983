"""The `operators` group: people who watch devices and send them commands, but do not manage them."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "operators"
PERMISSIONS = [
    ("devices", "view_device"), ("devices", "view_healthlog"), ("devices", "view_reportedconfig"),
    ("devices", "view_command"), ("devices", "add_command"), ("devices", "view_commandtransition"),
    ("devices", "view_protocolswitch"), ("devices", "view_presencechange"),
]  # fmt: skip


def create_group(apps, schema_editor):
    for app_config in apps.get_app_configs():  # permissions are normally created after migrate; they are needed now
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    for app_label, codename in PERMISSIONS:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0003_online_profile_delivery"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
