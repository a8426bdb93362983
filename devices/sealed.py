"""A model field whose text the database only ever holds sealed (Fernet, with SECRETS_KEY).

For secrets the server must use again in clear (a webhook's signing key), so a
database dump alone does not reveal them. Python code reads and writes plain
text; sealing happens on the way in and out. Sealed values cannot be searched.
"""

from __future__ import annotations

from django.db import models

from .credentials import seal, unseal


class SealedTextField(models.TextField):
    def from_db_value(self, value, expression, connection):
        return value if value in (None, "") else unseal(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return value if value in (None, "") else seal(value)
