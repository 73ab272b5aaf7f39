"""CPU-heavy work runs off the event loop, a bounded number of jobs at a time."""

from __future__ import annotations

import asyncio
import threading
import time

from caracal.offload import DEFAULT_LIMIT, CpuPool, run_cpu
from caracal.passwords import hash_client_secret
from tests.support import eventually

DEADLINE_S = 30.0


class Gate:
    """Jobs that record how many run at once and hold until the test opens the gate."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened = threading.Event()
        self.active = 0
        self.peak = 0
        self.started: list[int] = []

    def job(self, n: int) -> int:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.started.append(n)
        try:
            assert self.opened.wait(DEADLINE_S), "the test never opened the gate"
            return n * n
        finally:
            with self.lock:
                self.active -= 1


async def test_no_more_jobs_run_at_once_than_the_limit() -> None:
    pool, gate = CpuPool(limit=2), Gate()
    try:
        jobs = [asyncio.ensure_future(pool.run(gate.job, n)) for n in range(6)]
        await eventually(lambda: gate.active == 2, "gate.active == 2", within=DEADLINE_S, poll=0.001)
        assert len(gate.started) == 2  # the other four wait as coroutines, not in the executor
        gate.opened.set()
        assert await asyncio.gather(*jobs) == [n * n for n in range(6)]
        assert gate.peak == 2
    finally:
        gate.opened.set()
        pool.close()


async def test_a_cancelled_waiter_never_starts_its_job() -> None:
    pool, gate = CpuPool(limit=1), Gate()
    try:
        first = asyncio.ensure_future(pool.run(gate.job, 1))
        await eventually(lambda: gate.active == 1, "gate.active == 1", within=DEADLINE_S, poll=0.001)
        second = asyncio.ensure_future(pool.run(gate.job, 2))
        third = asyncio.ensure_future(pool.run(gate.job, 3))
        await asyncio.sleep(0)  # let both reach the semaphore
        second.cancel()
        gate.opened.set()
        assert (await first, await third) == (1, 9)
        assert gate.started == [1, 3]
        assert second.cancelled()
    finally:
        gate.opened.set()
        pool.close()


async def test_a_burst_of_client_secret_hashes_does_not_stall_the_event_loop() -> None:
    """A ticker due every 10 ms keeps ticking while 16 Argon2id hashes (64 MiB, t=3) run."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    hashes = await asyncio.gather(*(hash_client_secret(f"secret-{n}") for n in range(16)))
    elapsed = time.perf_counter() - started
    done.set()
    await ticking
    assert len(set(hashes)) == 16
    # Inline, each hash would freeze the loop for its whole run (0.1 s idle, over 1 s on a loaded
    # machine) and the ticker would tick about once per hash. The bounds leave room for a machine
    # shared with other work, where the scheduler alone delays a tick by tens of milliseconds.
    gaps.sort()
    assert len(gaps) >= elapsed / 0.03, f"{len(gaps)} ticks in {elapsed:.2f} s"
    assert gaps[int(len(gaps) * 0.95)] < 0.05, f"95th percentile gap {gaps[int(len(gaps) * 0.95)]:.3f} s"
    assert gaps[-1] < 0.5, f"longest gap {gaps[-1]:.3f} s"


async def test_the_process_pool_bounds_concurrency_by_default() -> None:
    gate = Gate()
    jobs = [asyncio.ensure_future(run_cpu(gate.job, n)) for n in range(DEFAULT_LIMIT + 3)]
    try:
        await eventually(
            lambda: gate.active == DEFAULT_LIMIT,
            "gate.active == DEFAULT_LIMIT",
            within=DEADLINE_S,
            poll=0.001,
        )
        assert len(gate.started) == DEFAULT_LIMIT
    finally:
        gate.opened.set()
    await asyncio.gather(*jobs)
    assert gate.peak == DEFAULT_LIMIT
