from django.apps import AppConfig


class TransportConfig(AppConfig):
    name = "transport"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import announce, live

        announce.consumers.append(live.on_stored)  # committed detections/health/answers → dashboards
