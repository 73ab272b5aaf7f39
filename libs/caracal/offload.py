"""CPU-heavy work off the event loop (Argon2id now, Rego evaluation later), a few jobs at a time.

Threads, not processes: argon2-cffi calls into C through cffi, which releases the GIL for the whole
hash (measured: a Python thread keeps ~85 % of its pace while a hash runs beside it), so a thread
pool keeps the loop free without pickling arguments to another process. Work that holds the GIL
would still stall the loop here; it belongs in a process pool instead.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, TypeVarTuple, Unpack

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# Each Argon2id hash holds 64 MiB while it runs; the API runs one process per core, so two jobs per
# process bound the memory at 128 MiB per worker and still keep every core busy under a burst.
DEFAULT_LIMIT = 2


class CpuPool:
    """At most `limit` jobs run at once; the others wait as coroutines, so a waiting request costs
    nothing and a cancelled one never starts its job."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._executor = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="caracal-cpu")
        # One semaphore per event loop: a semaphore is bound to the loop that first waits on it.
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        """`fn(*args)` on a pool thread, once a slot is free."""
        loop = asyncio.get_running_loop()
        slots = self._slots.setdefault(loop, asyncio.Semaphore(self.limit))
        async with slots:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def close(self) -> None:
        """Stop the threads; jobs not started yet are dropped."""
        self._executor.shutdown(wait=False, cancel_futures=True)


_default_pool: CpuPool | None = None


def default_pool() -> CpuPool:
    """The process's pool, made on first use (threads start only when work arrives)."""
    global _default_pool
    if _default_pool is None:
        _default_pool = CpuPool()
    return _default_pool


async def run_cpu(fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
    """Run CPU-heavy `fn(*args)` off the event loop on the process's bounded pool."""
    return await default_pool().run(fn, *args)
