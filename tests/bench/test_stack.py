"""bench/stack.py: several web processes sit behind nginx as in production, and count as one Daphne."""

import subprocess
import urllib.request
from types import SimpleNamespace

import pytest

from bench import stack
from tests.support import http_servers


@pytest.fixture
def backends():
    with http_servers(lambda: b"one", lambda: b"two") as servers:
        yield servers


def test_nginx_spreads_requests_over_every_web_process(tmp_path, backends):
    port = stack.free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(stack.nginx_conf(tmp_path, port, [s.server_address[1] for s in backends]))
    command = [stack.nginx_binary(), "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)]
    checked = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    nginx = subprocess.Popen(command)
    try:
        stack.wait_for(lambda: stack.answers(f"http://127.0.0.1:{port}/healthz"), 10, "nginx")
        answered = {urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read() for _ in range(8)}
    finally:
        nginx.terminate()
        nginx.wait(10)
    assert answered == {b"one", b"two"}


def test_every_web_process_counts_as_daphne(tmp_path):
    web = stack.Stack("postgres://unused", "redis://unused", tmp_path, web=3)
    names = ("daphne", "daphne2", "daphne3", "nginx", "bridge")
    web.procs.update({name: SimpleNamespace(pid=100 + n) for n, name in enumerate(names)})
    assert web.roles() == {"daphne": [100, 101, 102], "nginx": [103], "bridge": [104]}
    assert [stack.web_role(n) for n in range(3)] == ["daphne", "daphne2", "daphne3"]


def test_every_bridge_counts_as_the_bridge(tmp_path):
    two = stack.Stack("postgres://unused", "redis://unused", tmp_path, bridges=2)
    names = ("daphne", "bridge", "bridge2", "worker")
    two.procs.update({name: SimpleNamespace(pid=100 + n) for n, name in enumerate(names)})
    assert two.roles() == {"daphne": [100], "bridge": [101, 102], "worker": [103]}
    assert [stack.bridge_role(n) for n in range(3)] == ["bridge", "bridge2", "bridge3"]
