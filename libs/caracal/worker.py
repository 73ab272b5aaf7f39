"""The worker shape shared by the dispatcher and the reaper: a poll loop around one iteration."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

log = logging.getLogger("caracal.worker")


class StopSignal:
    """Set by SIGTERM/SIGINT: stop claiming new work, finish what is in flight."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.event.set)

    @property
    def is_set(self) -> bool:
        return self.event.is_set()


async def sleep_until(delay: float, *events: asyncio.Event) -> None:
    """Sleep `delay` seconds or until one of `events` is set, whichever comes first."""
    if delay <= 0 or any(e.is_set() for e in events):
        return
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def poll_loop(
    name: str,
    iteration: Callable[[], Awaitable[float]],
    stop: StopSignal,
    *,
    error_delay: float,
    wake: asyncio.Event | None = None,
) -> None:
    """Call `iteration` (which returns how long to wait) until stopped; a failure is logged and retried."""
    events = [stop.event] + ([wake] if wake else [])
    log.info("%s: poll loop started", name)
    while not stop.is_set:
        if wake is not None:
            wake.clear()
        try:
            delay = await iteration()
        except Exception:
            log.exception("%s: iteration failed; retrying in %.1fs", name, error_delay)
            delay = error_delay
        await sleep_until(delay, *events)


async def run_until_stopped(main: Awaitable[None], stop: StopSignal, shutdown_timeout: float) -> None:
    """Run the loop; once stopped, give in-flight work `shutdown_timeout` seconds, then cancel it."""
    task = asyncio.ensure_future(main)
    stopper = asyncio.create_task(stop.event.wait())
    await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        done, _ = await asyncio.wait([task], timeout=shutdown_timeout)
        if not done:
            log.warning("shutdown deadline reached; abandoning in-flight work")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    stopper.cancel()
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
