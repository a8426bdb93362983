"""Security test helpers: people in each role, and the doors' expectations written as tables.

Roles: `anonymous`; `plain`, signed in but neither staff nor operator; `operator`, in the
`operators` group; `staff` (is_staff); `superuser`. Tests that need a real server reuse
tests/realtime's `start_server`.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.db import transaction

ROLES = ("anonymous", "plain", "operator", "staff")


def make_person(role: str):
    """A saved user in `role` (None for anonymous)."""
    from tests.factories import OperatorFactory, UserFactory

    return {
        "anonymous": lambda: None,
        "plain": lambda: UserFactory(),
        "operator": lambda: OperatorFactory(),
        "staff": lambda: UserFactory(is_staff=True),
        "staff_operator": lambda: OperatorFactory(is_staff=True),
        "superuser": lambda: UserFactory(is_staff=True, is_superuser=True),
    }[role]()


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """People are made by the hundred here; PBKDF2's deliberate slowness would dominate the run."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def doors(table: list[tuple], roles: tuple[str, ...] = ROLES) -> list:
    """Rows `(door..., *expected per role)` → pytest params `(door..., {role: expected})`, id'd by the door."""
    params = []
    for row in table:
        door, expected = row[: -len(roles)], row[-len(roles) :]
        params.append(pytest.param(*door, dict(zip(roles, expected)), id=" ".join(str(d) for d in door[:2])))
    return params


@contextmanager
def rolled_back():
    """Try a door and forget what it did, so every role meets the same scene."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)
