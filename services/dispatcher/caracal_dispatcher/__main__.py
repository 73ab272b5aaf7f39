"""`caracal dispatcher`: poll (and wake on hints), publish, and drain on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

from opentelemetry import trace
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from caracal.cli import settings_or_exit
from caracal.db.engine import create_engine
from caracal.db.migrate import wait_for_schema
from caracal.outbox import WAKE_CHANNEL
from caracal.redis_client import REDIS_FAILURES, connect, is_cluster_url, learn_slots
from caracal.settings import Settings
from caracal.telemetry import configure_logging, configure_tracing
from caracal.worker import StopSignal, poll_loop, run_until_stopped, sleep_until
from caracal_dispatcher.dispatcher import Dispatcher
from caracal_dispatcher.leases import StreamLeases
from caracal_dispatcher.publisher import Replication, StreamPublisher

log = logging.getLogger("caracal.dispatcher")


async def listen_for_wakeups(redis: Redis, wake: asyncio.Event, stop: StopSignal) -> None:
    """Commit hints from the API and the reaper; losing one only delays delivery to the next poll."""
    while not stop.is_set:
        try:
            await learn_slots(redis)
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(WAKE_CHANNEL)
                while not stop.is_set:
                    if await pubsub.get_message(timeout=1.0) is not None:
                        wake.set()
        except REDIS_FAILURES as exc:
            log.debug("wake-up channel unavailable (%r); polling only", exc)
            await sleep_until(1.0, stop.event)


def publisher_options(redis_url: str, settings: Settings) -> dict[str, Any]:
    """WAIT blocks for up to its timeout, so the socket outlasts it. A cluster client must not retry a
    pipeline by itself: its retry sends WAIT to whichever node it likes, where WAIT confirms nothing
    (the dispatcher retries the batch itself, on the stream's node)."""
    options: dict[str, Any] = {
        "socket_timeout": 5 + settings.outbox_wait_timeout_ms / 1000,
        "socket_connect_timeout": 2,
    }
    if is_cluster_url(redis_url):
        options["retry"] = Retry(NoBackoff(), 0)
    return options


async def schema_ready(settings: Settings, stop: StopSignal) -> bool:
    """Wait for the API's migrations (the dispatcher's own queries go through its lease session)."""
    engine = create_engine(settings, pool_size=1)
    try:
        return await wait_for_schema(engine, lambda: stop.is_set)
    finally:
        await engine.dispose()


async def run(settings: Settings, traced: bool = False) -> None:
    database_url, redis_url = settings.require_servers()
    stop = StopSignal()
    stop.install()
    redis = connect(redis_url, **publisher_options(redis_url, settings))
    wake_redis = connect(redis_url, socket_connect_timeout=2)
    leases = StreamLeases(database_url, settings.db_statement_timeout_ms)
    dispatcher = Dispatcher(
        settings,
        StreamPublisher(
            redis,
            settings.streams_hmac_key,
            settings.outbox_stream_maxlen,
            trace.get_tracer("caracal.dispatcher") if traced else None,
            Replication(settings.outbox_wait_replicas, settings.outbox_wait_timeout_ms),
        ),
        leases,
    )
    wake = asyncio.Event()
    listener = asyncio.create_task(listen_for_wakeups(wake_redis, wake, stop))
    log.info(
        "dispatcher %s: polling every %d ms, batches of %d growing to %d while they come back full",
        settings.worker_id,
        settings.outbox_poll_ms,
        settings.outbox_batch,
        dispatcher.batches.cap,
    )
    try:
        if not await schema_ready(settings, stop):
            return
        # What start-up built (imported modules, settings, clients) lives as long as the process:
        # frozen, the collector's full passes, which a backlog's batches set off, stop walking it.
        gc.collect()
        gc.freeze()
        loop = poll_loop(
            "dispatcher",
            dispatcher.iteration,
            stop,
            error_delay=max(settings.outbox_poll_ms / 1000, 1.0),
            wake=wake,
        )
        await run_until_stopped(loop, stop, settings.shutdown_timeout_ms / 1000)
    finally:
        listener.cancel()
        await leases.close()
        await redis.aclose()
        await wake_redis.aclose()
        log.info("dispatcher stopped")


def main() -> None:
    settings = settings_or_exit()
    configure_logging(settings.log_level, "dispatcher", settings.log_format)
    asyncio.run(run(settings, configure_tracing("dispatcher", settings.otel_traces_exporter)))


if __name__ == "__main__":
    main()
