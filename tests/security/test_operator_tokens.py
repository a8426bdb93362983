"""Operator API tokens: issued once (command or admin), stored as a hash, revoked by deleting them."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client

from lpr_server import tokens
from lpr_server.models import OperatorToken
from tests.factories import OperatorFactory, UserFactory

pytestmark = pytest.mark.django_db


def api(key: str) -> int:
    return Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/devices/").status_code


def test_the_command_prints_a_token_once_and_keeps_only_its_hash(capsys):
    operator = OperatorFactory()
    call_command("operator_token", operator.username, "--name", "nightly export")
    key = capsys.readouterr().out.strip()

    assert api(key) == 200
    stored = OperatorToken.objects.get(user=operator)
    assert (stored.key_hash, stored.prefix, stored.name) == (tokens.hash_key(key), key[:8], "nightly export")
    assert key not in str(list(OperatorToken.objects.values_list()))


def test_the_admin_issues_a_token_shown_once_and_deleting_it_revokes_it():
    staff = UserFactory(is_staff=True, is_superuser=True)
    operator = OperatorFactory()
    admin = Client()
    admin.force_login(staff)

    page = admin.post("/admin/lpr_server/operatortoken/add/", {"user": operator.pk, "name": "grafana"}, follow=True)
    key = re.search(r"shown only now: <code>([^<]+)</code>", page.content.decode()).group(1)
    assert api(key) == 200
    assert key not in admin.get("/admin/lpr_server/operatortoken/").content.decode()

    OperatorToken.objects.filter(user=operator).delete()
    assert api(key) == 401


def test_wrong_and_inactive_users_tokens_are_refused():
    operator = OperatorFactory()
    key = tokens.issue(operator)[1]
    assert api(key[:-1] + ("A" if key[-1] != "A" else "B")) == 401
    operator.is_active = False
    operator.save()
    assert api(key) == 401
