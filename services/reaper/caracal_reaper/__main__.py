"""`caracal reaper`: runs its jobs every CARACAL_REAPER_INTERVAL_MS until SIGTERM."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.cli import settings_or_exit
from caracal.db.engine import create_engine
from caracal.db.migrate import wait_for_schema
from caracal.settings import Settings
from caracal.telemetry import configure_logging
from caracal.worker import StopSignal, poll_loop, run_until_stopped
from caracal_reaper.jobs import prune_outbox

log = logging.getLogger("caracal.reaper")


async def reap_once(engine: AsyncEngine, settings: Settings) -> None:
    await prune_outbox(engine, settings)


async def run(settings: Settings) -> None:
    settings.require_servers()
    stop = StopSignal()
    stop.install()
    engine = create_engine(settings, pool_size=2)
    interval = settings.reaper_interval_ms / 1000

    async def iteration() -> float:
        await reap_once(engine, settings)
        return interval

    log.info("reaper: running jobs every %.1f s", interval)
    try:
        if not await wait_for_schema(engine, lambda: stop.is_set):
            return
        await run_until_stopped(
            poll_loop("reaper", iteration, stop, error_delay=interval),
            stop,
            settings.shutdown_timeout_ms / 1000,
        )
    finally:
        await engine.dispose()
        log.info("reaper stopped")


def main() -> None:
    settings = settings_or_exit()
    configure_logging(settings.log_level, "reaper")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
