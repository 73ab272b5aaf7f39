"""What every request needs: settings, the database engine and the Redis client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from litestar.datastructures import State
from litestar.di import NamedDependency
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from caracal.db.engine import transaction
from caracal.outbox import WAKE_CHANNEL
from caracal.settings import Settings

log = logging.getLogger("caracal.api")


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    draining: bool = False
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    touched: dict[str, float] = field(default_factory=dict)  # token id -> when this process last touched it

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Fire-and-forget work after a response (audit rows, last_used_at, wake-up hints)."""
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background work failed: %r", task.exception())

    @asynccontextmanager
    async def writing(self, request: Any) -> AsyncIterator[AsyncConnection]:
        """A write transaction; once it has committed, the dispatcher is told to look (best effort,
        outside the transaction: the poll is the fallback)."""
        async with transaction(self.engine) as conn:
            yield conn
        self.spawn(self._publish_wake())

    async def _publish_wake(self) -> None:
        try:
            await self.redis.publish(WAKE_CHANNEL, "1")
        except Exception as exc:
            log.debug("wake-up hint not sent: %r", exc)


def provide_resources(state: State) -> Resources:
    resources: Resources = state.resources
    return resources


ResourcesDep = NamedDependency[Resources]
