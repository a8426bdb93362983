"""A connection's periodic chores end when the connection leaves, whatever they were awaiting."""

import asyncio

from transport.ws.lifecycle import every, stop


def test_the_chores_end_on_cancel_even_when_a_step_swallows_the_cancellation():
    calls = 0

    async def step():
        nonlocal calls
        calls += 1
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            pass  # as the asyncio Redis client's calls behind presence were seen to do

    async def scenario():
        chores = every(0.01, step)
        while calls == 0:
            await asyncio.sleep(0.001)
        await stop(chores, patience=1.0)  # lands in the step's sleep
        made = calls
        await asyncio.sleep(0.1)  # ten intervals: any further round would show
        return chores.done(), made, calls

    done, made, later = asyncio.run(scenario())
    assert done
    assert later == made == 1


def test_a_failing_round_does_not_end_the_chores():
    rounds = []

    async def step():
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("Redis briefly away")
        return len(rounds) < 3

    async def scenario():
        chores = every(0.01, step)
        await asyncio.wait_for(chores, 2)

    asyncio.run(scenario())
    assert rounds == [0, 1, 2]  # past the failure, until the step said False
