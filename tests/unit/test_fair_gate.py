"""caracal.db.gate.FairGate: places in arrival order, no newcomer ahead of a waiter, bounded waits."""

from __future__ import annotations

import asyncio

import pytest

from caracal.db.gate import FairGate
from caracal.errors import Overloaded


async def _steps(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_waiters_enter_in_arrival_order_and_a_newcomer_does_not_go_first() -> None:
    gate, entered = FairGate(1, timeout=5), []
    await gate.enter()

    async def take(name: str) -> None:
        await gate.enter()
        entered.append(name)
        await _steps(2)
        gate.leave()

    waiting = [asyncio.create_task(take(f"w{n}")) for n in range(4)]
    await _steps()
    assert (gate.free, len(gate.waiters)) == (0, 4)
    gate.leave()  # the place goes to w0 now, before w0 runs again
    late = asyncio.create_task(take("newcomer"))  # arrives while w0 has not resumed yet
    await asyncio.gather(*waiting, late)
    assert entered == ["w0", "w1", "w2", "w3", "newcomer"]
    assert (gate.free, len(gate.waiters)) == (1, 0)


async def test_a_wait_beyond_the_timeout_is_overloaded_and_leaves_the_line() -> None:
    gate = FairGate(1, timeout=0.05)
    await gate.enter()
    with pytest.raises(Overloaded) as refused:
        await gate.enter()
    assert refused.value.code == "overloaded"
    assert len(gate.waiters) == 0
    gate.leave()
    await asyncio.wait_for(gate.enter(), 1)  # the place is whole again
    assert gate.free == 0


async def test_a_place_handed_to_a_cancelled_waiter_goes_to_the_next() -> None:
    gate = FairGate(1, timeout=5)
    await gate.enter()
    first = asyncio.create_task(gate.enter())
    second = asyncio.create_task(gate.enter())
    await _steps()
    gate.leave()  # handed to `first`...
    first.cancel()  # ...which is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    assert (gate.free, len(gate.waiters)) == (0, 0)
    gate.leave()
    assert gate.free == 1


async def test_a_cancelled_waiter_leaves_the_line_and_takes_no_place() -> None:
    gate = FairGate(2, timeout=5)
    await gate.enter()
    await gate.enter()
    waiter = asyncio.create_task(gate.enter())
    await _steps()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(gate.waiters) == 0
    gate.leave()
    gate.leave()
    assert gate.free == 2
