"""Audit rows of failed requests: written off the request, in batches, through a bounded queue.

A mutation's own row commits with it (Resources.writing). Failures of authenticated callers are
recorded here; when the queue is full the row is dropped and counted, so no flood of failing requests
can grow memory or the database without bound. Unauthenticated failures write nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.db.engine import transaction
from caracal.domain.audit import insert_audit_rows, request_audit_row
from caracal.domain.context import Caller

log = logging.getLogger("caracal.api.audit")
QUEUE_SIZE = 1000
BATCH = 200


def request_row(scope: dict[str, Any], status: int) -> dict[str, Any]:
    """The audit row of one /v1 request, from its ASGI scope (the caller the guard left in its state)."""
    state: dict[str, Any] = scope.get("state", {})
    caller = state.get("caller") or Caller(None, state.get("request_id"))
    query = scope.get("query_string", b"").decode("latin-1")
    # the URL as sent (still percent-encoded, like the original's req.url): a decoded %00 cannot be stored
    path = bytes(scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    return request_audit_row(caller, scope["method"], path + (f"?{query}" if query else ""), status)


class AuditQueue:
    def __init__(self, engine: AsyncEngine, size: int = QUEUE_SIZE) -> None:
        self.engine = engine
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=size)
        self.dropped = 0  # rows refused because the queue was full
        self.lost = 0  # rows the database did not take
        self.written = 0
        self.writer: asyncio.Task[None] | None = None
        self.on_drop: Callable[[], None] = lambda: None  # the app counts drops in /metrics

    def offer(self, row: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(row)
        except asyncio.QueueFull:
            self.dropped += 1
            self.on_drop()

    async def run(self) -> None:
        """Write batch after batch until cancelled."""
        while True:
            batch = [await self.queue.get()]
            await self.write(batch)

    def start(self) -> None:
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self.run(), name="audit-writer")

    async def stop(self) -> None:
        """Write what is queued, then stop the writer."""
        if self.writer is not None:
            self.writer.cancel()
            await asyncio.gather(self.writer, return_exceptions=True)
        await self.drain()

    async def write(self, batch: list[dict[str, Any]]) -> None:
        while len(batch) < BATCH and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        try:
            async with transaction(self.engine) as conn:
                await insert_audit_rows(conn, batch)
            self.written += len(batch)
        except Exception:
            self.lost += len(batch)
            log.warning("audit rows of %d failed requests not written", len(batch), exc_info=True)
        finally:
            for _ in batch:
                self.queue.task_done()

    async def flush(self) -> None:
        """Until everything offered so far is written (or counted lost)."""
        self.start()
        await self.queue.join()

    async def drain(self) -> None:
        """What is queued at shutdown."""
        while not self.queue.empty():
            await self.write([self.queue.get_nowait()])
