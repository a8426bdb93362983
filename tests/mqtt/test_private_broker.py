"""The tests' private Mosquitto: a port found free but taken before Mosquitto binds it costs a retry, not a test."""

from __future__ import annotations

import socket

from tests.mqtt import conftest
from tests.support import free_port


def test_a_port_taken_between_finding_it_and_binding_it_is_replaced(tmp_path, monkeypatch):
    with socket.socket() as taken:  # bound, not listening: as an outgoing connection's local port holds one
        taken.bind(("127.0.0.1", 0))
        offered = [taken.getsockname()[1], free_port(), free_port(), free_port()]
        monkeypatch.setattr(conftest, "free_port", lambda: offered.pop(0))

        broker = conftest.Mosquitto(tmp_path, "allow_anonymous true\nlistener {extra_port} 127.0.0.1\n")
        try:
            assert broker.port != taken.getsockname()[1] and not offered  # the second try's two ports
            assert "Address already in use" in (tmp_path / f"mosquitto-{taken.getsockname()[1]}.log").read_text()
            with socket.create_connection(("127.0.0.1", broker.extra_port), timeout=5):
                pass  # the second listener answers too
        finally:
            broker.stop()
