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


def outcomes(cases, attempt) -> dict:
    """`{case: attempt(case)}`, each attempt rolled back afterwards: the row of a door table, as observed."""
    got = {}
    for case in cases:
        with rolled_back():
            got[case] = attempt(case)
    return got



@pytest.fixture(scope="session")
def security_server(django_db_setup, tmp_path_factory):
    """`manage.py serve` as in production, access log on, with its embedded MQTT broker, on the test database.

    Its output (Django's logs, Daphne's access log, the broker's and the bridge's logs) is `security_server.log()`;
    the broker listens on `security_server.mqtt_port`.
    """
    import sys

    from django.conf import settings

    from tests.realtime.conftest import start_server
    from tests.support import free_port, wait_until

    mqtt_port = free_port()
    command = [sys.executable, "manage.py", "serve", "--port", "{port}", "--access-log", "--no-watch"]
    # Pings (and the sockets' own periodic authorisation check) a minute apart: what closes a revoked socket
    # at once in these tests is the revocation itself.
    server = start_server(tmp_path_factory.mktemp("security"), command, MQTT_URL="", LOG_LEVEL="INFO",
                          MQTT_EMBEDDED_PORT=str(mqtt_port), REDIS_URL=settings.REDIS_URL,
                          REALTIME_PING_INTERVAL_S="60", REALTIME_SILENT_TIMEOUT_S="180")  # fmt: skip
    server.mqtt_port = mqtt_port
    # /healthz answers before the MQTT bridge (a child process) has subscribed; a message published before
    # that would find no subscriber.
    wait_until(lambda: "subscribed to lpr/v1/devices/+/up/+" in server.log(), 60, what="the MQTT bridge to subscribe")
    yield server
    server.stop()
