from django.apps import AppConfig


class TransportConfig(AppConfig):
    name = "transport"
    default_auto_field = "django.db.models.BigAutoField"
