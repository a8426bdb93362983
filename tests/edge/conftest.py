"""Edge SDK tests: no database, no Django; network only to 127.0.0.1."""
from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def device_id() -> str:
    """A fresh device id, so retained MQTT messages of other runs never interfere."""
    return f"EDGE-TEST-{uuid.uuid4().hex[:10]}"
