"""`caracal reaper`: runs its jobs every CARACAL_REAPER_INTERVAL_MS (at once while work remains)."""

from __future__ import annotations

import asyncio
import logging

from caracal.cli import settings_or_exit
from caracal.db.engine import create_engine
from caracal.db.migrate import wait_for_schema
from caracal.redis_client import connect
from caracal.settings import Settings
from caracal.telemetry import configure_logging, configure_tracing
from caracal.worker import StopSignal, poll_loop, run_until_stopped
from caracal_reaper.jobs import JOBS
from caracal_reaper.runner import Reaper

log = logging.getLogger("caracal.reaper")


async def run(settings: Settings) -> None:
    _, redis_url = settings.require_servers()
    stop = StopSignal()
    stop.install()
    engine = create_engine(settings, pool_size=2)
    redis = connect(redis_url, socket_timeout=2, socket_connect_timeout=2)
    reaper = Reaper(settings, engine, redis, JOBS, stopping=lambda: stop.is_set)
    log.info("reaper: %s every %.1f s", ", ".join(j.name for j in JOBS), reaper.interval)
    if settings.audit_hmac_key is None:
        log.warning("AUDIT_HMAC_KEY is not set: admin audit rows are written but not sealed into the chain")
    try:
        if not await wait_for_schema(engine, lambda: stop.is_set):
            return
        await run_until_stopped(
            poll_loop("reaper", reaper.run_due, stop, error_delay=reaper.interval),
            stop,
            settings.shutdown_timeout_ms / 1000,
        )
    finally:
        await redis.aclose()
        await engine.dispose()
        log.info("reaper stopped")


def main() -> None:
    settings = settings_or_exit()
    configure_logging(settings.log_level, "reaper", settings.log_format)
    configure_tracing("reaper", settings.otel_traces_exporter)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
