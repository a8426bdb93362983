"""System checks: a SECRETS_KEY that cannot seal is reported when the server starts, not at a device's first request."""

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from .credentials import vault_for


@checks.register(checks.Tags.security)
def secrets_key_is_usable(app_configs, **kwargs):
    try:
        vault_for(settings.SECRETS_KEY)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="devices.E001")]
    return []
