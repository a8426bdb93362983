from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _register_sqlite_functions(sender, connection, **kwargs) -> None:
    """SQLite has no Levenshtein: fuzzy search's exact re-check runs as this Python function there."""
    if connection.vendor != "sqlite":
        return
    from .plates import matches_any_word

    connection.connection.create_function(
        "lpr_fuzzy_match", 3, lambda text, query, limit: matches_any_word(text or "", query, limit), deterministic=True
    )


class DetectionsConfig(AppConfig):
    name = "detections"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        connection_created.connect(_register_sqlite_functions, dispatch_uid="detections.sqlite_functions")
