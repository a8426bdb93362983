"""Operator API tokens (`Authorization: Token <key>`): issued once, stored as SHA-256, checked by one lookup.

Keys are 256 random bits, so an unsalted fast hash is safe (as for device keys, devices/credentials.py).
"""

from __future__ import annotations

import secrets

from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from devices.credentials import hash_key

from .models import OperatorToken

KEY_PREFIX = "lpo_"


def issue(user, name: str = "") -> tuple[OperatorToken, str]:
    """A new token for `user`; the key is returned once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = OperatorToken.objects.create(user=user, name=name, key_hash=hash_key(key), prefix=key[:8])
    return token, key


class OperatorTokenAuthentication(TokenAuthentication):
    """DRF's `Token <key>` scheme, looked up by the key's hash."""

    model = OperatorToken

    def authenticate_credentials(self, key):
        token = OperatorToken.objects.select_related("user").filter(key_hash=hash_key(key)).first()
        if token is None:
            raise AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        return token.user, token
