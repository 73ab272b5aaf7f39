"""Runs reaper jobs: each under its advisory lock, batch by batch within its budget, when due."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from opentelemetry import trace
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from caracal.outbox import send_wake_hint
from caracal.reaper_stats import record_failure, record_success
from caracal.settings import Settings
from caracal_reaper.job import Job, JobReport

log = logging.getLogger("caracal.reaper")

_TRY_LOCK = text("SELECT pg_try_advisory_lock(:k)")
_UNLOCK = text("SELECT pg_advisory_unlock(:k)")


class Reaper:
    """The jobs of one reaper process and when each is next due."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        redis: Redis,
        jobs: Sequence[Job],
        *,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.redis = redis
        self.jobs = tuple(jobs)
        self.interval = settings.reaper_interval_ms / 1000
        self.stopping = stopping
        self.due = {job.name: 0.0 for job in self.jobs}
        self.tracer = trace.get_tracer("caracal.reaper")  # no-op spans until tracing is configured

    async def run_due(self) -> float:
        """Run every job that is due; returns how long until the next one is."""
        for job in self.jobs:
            if self.due[job.name] <= time.monotonic() and not self.stopping():
                more = await self._run_logged(job)
                self.due[job.name] = time.monotonic() + (0.0 if more else job.interval_s or self.interval)
        return max(0.0, min(self.due.values(), default=time.monotonic()) - time.monotonic())

    async def _run_logged(self, job: Job) -> bool:
        try:
            report = await self.run_job(job)
        except Exception:
            log.exception("%s: failed; next attempt in %.1f s", job.name, self.interval)
            await self._count(record_failure(self.redis, job.name))
            return False
        if report.ran:
            await self._count(record_success(self.redis, job.name, report.changed, report.events))
        if report.changed or report.events:
            log.info(
                "%s: %d rows in %d batches, %d events%s",
                job.name,
                report.changed,
                report.batches,
                report.events,
                "; more to do, running again" if report.more else "",
            )
        return report.more

    async def run_job(self, job: Job) -> JobReport:
        """One run of `job`, a span when tracing is on (the events it writes carry its traceparent)."""
        with self.tracer.start_as_current_span(f"reaper {job.name}") as span:
            report = await self._run_locked(job)
            span.set_attribute("caracal.reaper.ran", report.ran)
            span.set_attribute("caracal.reaper.rows_changed", report.changed)
            span.set_attribute("caracal.reaper.events", report.events)
            return report

    async def _run_locked(self, job: Job) -> JobReport:
        """Under the job's lock (a session lock, so it dies with a lost connection)."""
        async with self.engine.connect() as conn:
            locked = (await conn.execute(_TRY_LOCK, {"k": job.lock_key})).scalar()
            await conn.commit()
            if not locked:
                return JobReport(job.name, ran=False)
            try:
                return await self._batches(conn, job)
            finally:
                await _unlock(conn, job)

    async def _batches(self, conn: AsyncConnection, job: Job) -> JobReport:
        deadline = time.monotonic() + job.budget_s
        batches = changed = events = 0
        while True:
            async with conn.begin():
                outcome = await job.batch(conn, self.settings)
            batches, changed, events = batches + 1, changed + outcome.changed, events + outcome.events
            if outcome.events:
                await self._wake_dispatchers()
            if not outcome.more or time.monotonic() >= deadline or self.stopping():
                return JobReport(job.name, True, batches, changed, events, outcome.more)

    async def _count(self, recording: Coroutine[Any, Any, None]) -> None:
        """The job's figures for /metrics; Redis being away must not stop the clean-up itself."""
        try:
            await recording
        except Exception:
            log.warning("reaper: could not record the job's figures", exc_info=True)

    async def _wake_dispatchers(self) -> None:
        """The hint the API sends after its commits; if lost, the dispatcher's poll finds the events."""
        await send_wake_hint(self.redis)


async def _unlock(conn: AsyncConnection, job: Job) -> None:
    """Release the job's lock without hiding an error already on its way out; if the release fails,
    the connection is discarded so the lock goes with it rather than back into the pool."""
    try:
        await conn.execute(_UNLOCK, {"k": job.lock_key})
        await conn.commit()
    except Exception:
        log.warning("%s: could not release its lock; discarding the connection", job.name, exc_info=True)
        await conn.invalidate()
