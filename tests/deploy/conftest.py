"""Operators' and cameras' credentials, as the real-time tests make them."""

from tests.realtime.conftest import operator_cookie, token_for  # noqa: F401 (fixtures)
