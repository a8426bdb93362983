"""`lpr_event_loop_lag_seconds`: a loop kept busy is seen late by its probe."""

from __future__ import annotations

import asyncio
import time

from transport import loop_lag, metrics

BUSY_S = 0.08


def _count_at_most(bound: str) -> int:
    for line in metrics.event_loop_lag.render():
        if line.startswith(f'lpr_event_loop_lag_seconds_bucket{{le="{bound}"}}'):
            return int(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no bucket {bound}")


def test_a_callback_that_holds_the_loop_shows_as_lag():
    before_all, before_quick = _count_at_most("+Inf"), _count_at_most("0.05")

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        loop_lag.watch(loop)
        loop_lag.watch(loop)  # once per loop
        probes = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "_probe"]
        await asyncio.sleep(loop_lag.INTERVAL_S / 2)
        time.sleep(BUSY_S)  # the loop held: the probe's timer falls due meanwhile
        await asyncio.sleep(loop_lag.INTERVAL_S)
        return len(probes)

    assert asyncio.run(scenario()) == 1
    late = (_count_at_most("+Inf") - before_all) - (_count_at_most("0.05") - before_quick)
    assert late >= 1  # the wake-up due while the loop was held came more than 50 ms late
