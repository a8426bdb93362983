import hashlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def hash_existing_tokens(apps, schema_editor):
    """DRF's tokens were stored in clear: keep them working, as hashes, and delete the clear copies."""
    Token = apps.get_model("authtoken", "Token")
    OperatorToken = apps.get_model("lpr_server", "OperatorToken")
    for token in Token.objects.all():
        OperatorToken.objects.create(user_id=token.user_id, name="from DRF's token table",
                                     key_hash=hashlib.sha256(token.key.encode()).hexdigest(), prefix=token.key[:8])
    Token.objects.all().delete()


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="OperatorToken",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(blank=True, help_text="What uses it, e.g. the script's name.", max_length=100)),
                ("key_hash", models.CharField(editable=False, max_length=64, unique=True)),
                ("prefix", models.CharField(editable=False, help_text="The key's first characters, to recognise it.", max_length=8)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="operator_tokens",
                                           to=settings.AUTH_USER_MODEL)),
            ],
            options={"ordering": ["-created_at"]},
        ),
        migrations.RunPython(hash_existing_tokens, migrations.RunPython.noop),
    ]
