"""`manage.py run_mqtt_bridge ARGS`, but its SIGTERM and SIGINT handlers take 0.3 s, as on a busy machine.

CPython 3.11's `queue.SimpleQueue.get(timeout=...)` waits forever when a signal handler
runs past what was left of its timeout: a bridge whose main thread waited that way
never saw its stop event. Run by tests/mqtt/test_reliability.py.
"""

import functools
import os
import signal
import sys
import time

import django

HANDLER_S = 0.3


def _slowly(handler, signum, frame):
    deadline = time.monotonic() + HANDLER_S
    while time.monotonic() < deadline:
        pass
    handler(signum, frame)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lpr_server.settings")
    django.setup()
    from django.core.management import call_command

    from lpr_server import shutdown

    install = shutdown.stop_on_signals

    def stop_on_slow_signals(*args, **kwargs):
        stop = install(*args, **kwargs)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, functools.partial(_slowly, signal.getsignal(sig)))
        return stop

    shutdown.stop_on_signals = stop_on_slow_signals
    call_command("run_mqtt_bridge", *sys.argv[1:])


if __name__ == "__main__":
    main()
