"""Long-running commands stop promptly on SIGTERM, and one that cannot says where it is stuck."""

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.support import REPO, server_database_url

STUCK = textwrap.dedent(
    """
    import os, sys, time
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lpr_server.settings")
    import django
    django.setup()
    from lpr_server import shutdown

    def storage_that_never_answers():
        while True:
            time.sleep(0.05)

    shutdown.stop_on_signals(deadline_s=1.0)
    print("ready", flush=True)
    storage_that_never_answers()
    """
)


def test_a_process_still_running_past_the_deadline_after_sigterm_writes_its_stacks_and_exits():
    proc = subprocess.Popen([sys.executable, "-c", STUCK], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"}, text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        status = proc.wait(15)
        waited = time.monotonic() - started
    finally:
        proc.kill()
    stderr = proc.stderr.read()
    assert status == 1, stderr
    assert waited >= 0.9  # the deadline, not at once: the command had its chance to finish
    assert "storage_that_never_answers" in stderr  # where it was stuck


POOLED = textwrap.dedent(
    """
    import os, threading
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lpr_server.settings")
    import django
    django.setup()
    from django.db import connection
    from lpr_server import shutdown

    def pool_threads():
        return sorted(t.name for t in threading.enumerate() if t.name.startswith("pool-"))

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    print(pool_threads(), flush=True)
    shutdown.close_database_pools()
    print(pool_threads(), flush=True)
    """
)


@pytest.mark.django_db(transaction=True)
def test_closing_the_database_pools_ends_their_threads_before_exit_would_have_to():
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "DATABASE_URL": server_database_url()}
    result = subprocess.run([sys.executable, "-c", POOLED], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.splitlines()
    assert "pool-1-scheduler" in before  # the pool was in use, with its threads
    assert after == "[]"
