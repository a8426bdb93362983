"""Operator API tokens: a database dump must not hand out the operator API."""

from django.conf import settings
from django.db import models


class OperatorToken(models.Model):
    """A key for the operator API (`Authorization: Token <key>`), for scripts. Shown once; only its SHA-256 is kept."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="operator_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What uses it, e.g. the script's name.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=8, editable=False, help_text="The key's first characters, to recognise it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user}{', ' + self.name if self.name else ''})"
