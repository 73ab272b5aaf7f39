"""What every request of one API worker needs: settings, the engine, Redis clients, caches, queues."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from litestar import Response
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.serialization import encode_json
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from caracal import rego
from caracal.db.engine import AFTER_COMMIT, autocommit, read_retried, transaction
from caracal.domain.audit import insert_audit_row_with_events
from caracal.domain.idempotency import store_response
from caracal.errors import CaracalError, Conflict
from caracal.outbox import defer_events, send_wake_hint, take_deferred
from caracal.settings import Settings
from caracal_api.audit_trail import AuditQueue, request_row
from caracal_api.idempotency import STATE as IDEMPOTENCY_STATE
from caracal_api.idempotency import replay_after_failure
from caracal_api.ratelimit import RequestLimits, request_redis
from caracal_api.token_cache import TokenCache, announce, listen_for_invalidations

log = logging.getLogger("caracal.api")
R = TypeVar("R")
STOP_TIMEOUT_S = 5.0


class WakeHint:
    """Tells the dispatcher to look, after commits; at most one PUBLISH in flight per process."""

    def __init__(self, limits: RequestLimits) -> None:
        self.limits = limits
        self.task: asyncio.Task[None] | None = None
        self.again = False

    def nudge(self) -> None:
        if self.task is not None and not self.task.done():
            self.again = True  # the publish in flight may have been read before this commit
            return
        self.task = asyncio.create_task(self._publish())

    async def _publish(self) -> None:
        while True:
            self.again = False
            if self.limits.breaker.allows():
                if await send_wake_hint(self.limits.redis):
                    self.limits.breaker.succeeded()
                else:
                    self.limits.breaker.failed()
            if not self.again:
                return


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    redis: Redis  # for work off the request path (readiness, metrics, pub/sub)
    limits: RequestLimits = field(init=False)
    tokens: TokenCache = field(init=False)
    audit: AuditQueue = field(init=False)
    wake: WakeHint = field(init=False)
    draining: bool = False
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    touched: dict[str, float] = field(default_factory=dict)  # token id -> when this process last touched it
    listener: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        _, redis_url = self.settings.require_servers()
        self.limits = RequestLimits(request_redis(redis_url, self.settings.redis_request_timeout_ms))
        self.tokens = TokenCache(self.engine, self.settings.auth_cache_ttl_ms / 1000)
        self.audit = AuditQueue(self.engine)
        self.wake = WakeHint(self.limits)
        rego.configure(  # this process's Rego workers, started on first use
            workers=self.settings.rego_workers,
            timeout_ms=self.settings.rego_timeout_ms,
            max_pending=self.settings.rego_max_pending,
            max_bytes=self.settings.policy_max_bytes,
        )

    def start(self) -> None:
        """Background work of this worker (idempotent: the first request starts it if lifespan did not)."""
        self.audit.start()
        if self.listener is None:
            self.listener = asyncio.create_task(
                listen_for_invalidations(self.redis, self.tokens), name="token-invalidations"
            )

    async def stop(self) -> None:
        """Stop background work within STOP_TIMEOUT_S; every failure is logged, none hides another."""
        if self.listener is not None:
            self.listener.cancel()
        try:
            await asyncio.wait_for(self.audit.stop(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("audit rows still queued at shutdown were not written (%d)", self.audit.queue.qsize())
        tasks = {t for t in (self.listener, self.wake.task, *self.background) if t is not None}
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
            for task in pending:
                log.warning("background task %s did not finish at shutdown; cancelled", task.get_name())
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("background task %s failed", task.get_name(), exc_info=task.exception())
        await self.limits.redis.aclose()
        rego.shutdown()

    async def settled(self) -> None:
        """Until the work started after responses so far is done (tests wait on this)."""
        await self.audit.flush()
        while self.background or (self.wake.task is not None and not self.wake.task.done()):
            await asyncio.gather(*self.background, *[t for t in (self.wake.task,) if t is not None])

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Fire-and-forget work after a response (last_used_at, broadcasts)."""
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background work failed", exc_info=task.exception())

    async def read(self, query: Callable[[AsyncConnection], Awaitable[R]]) -> R:
        """An idempotent read in autocommit on one connection, retried once on a broken connection."""
        return await read_retried(self.engine, query)

    @asynccontextmanager
    async def writing(self, request: Any) -> AsyncIterator[AsyncConnection]:
        """The request's write transaction: its state, outbox rows and audit row commit together.

        After the commit: cache invalidations the domain asked for go to every worker, and the
        dispatcher is told to look (best effort, outside the transaction: the poll is the fallback).
        """
        notes: list[str] = []
        async with transaction(self.engine) as conn:
            conn.info[AFTER_COMMIT] = notes
            defer_events(conn)  # the outbox rows go in with the audit row: one round trip for both
            try:
                yield conn
                row = request_row(request.scope, request.route_handler.status_code)
                await insert_audit_row_with_events(conn, row, take_deferred(conn))
            finally:
                # a connection lost mid-transaction took its info with it; touching it would raise
                # PendingRollbackError and turn the loss (a 503) into a 500
                if not conn.invalidated:
                    conn.info.pop(AFTER_COMMIT, None)
                    take_deferred(conn)  # a failed write's kept events go with its rollback
        await self._committed(request, notes)

    async def _committed(self, request: Any, notes: list[str]) -> None:
        """After a write committed: its audit row is written, the invalidations it asked for go to
        every worker, the dispatcher is told to look."""
        request.scope["state"]["audited"] = True
        for message in notes:  # rare (revocations, archived zones): told before the response goes out
            self.tokens.forget(message)
            await announce(self.limits.redis, message)
        self.wake.nudge()

    async def write(self, request: Any, op: Callable[[AsyncConnection], Awaitable[Any]]) -> Response[Any]:
        """A POST's transaction (`writing`): op's answer is encoded here as Litestar would, stored
        under the request's Idempotency-Key in the same transaction, and sent as those bytes."""
        try:
            async with self.writing(request) as conn:
                body = encode_json(await op(conn), request.route_handler.default_serializer)
                await _remember(conn, request, body)
        except CaracalError:
            # a duplicate that committed first (the key's insert waited for it) answers instead
            if (replayed := await replay_after_failure(request, self)) is None:
                raise
            return replayed
        return _answer(request, body)

    async def at_once(
        self, request: Any, write: Callable[[AsyncConnection, dict[str, Any]], Awaitable[R | None]]
    ) -> R | None:
        """A write that is one statement carrying the request's audit row and events
        (`domain.audit.audited`), run in autocommit: one round trip, atomic as any statement.
        `write(conn, audit_row)` answers None when that statement could not do the write (nothing
        was written; the caller then takes the transaction). Not retried: a write's outcome on a lost
        connection is unknown, so that is 503 as in `writing`."""
        notes: list[str] = []
        async with autocommit(self.engine) as conn:
            conn.info[AFTER_COMMIT] = notes
            result = await write(conn, request_row(request.scope, request.route_handler.status_code))
        if result is not None:
            await self._committed(request, notes)
        return result

    async def write_at_once(
        self,
        request: Any,
        at_once: Callable[[AsyncConnection, dict[str, Any]], Awaitable[Any | None]],
        op: Callable[[AsyncConnection], Awaitable[Any]],
    ) -> Response[Any]:
        """A POST done by `at_once` (see there), or by `write(op)` when it answers None and when the
        request carries an Idempotency-Key (its stored answer needs the transaction around the
        encoded body)."""
        if request.scope["state"].get(IDEMPOTENCY_STATE) is None:
            result = await self.at_once(request, at_once)
            if result is not None:
                return _answer(request, encode_json(result, request.route_handler.default_serializer))
        return await self.write(request, op)

    async def answer(self, request: Any, result: Any) -> Response[Any]:
        """A POST that changes no rows (simulate, validate, authorize): its answer, stored under
        the request's Idempotency-Key in a transaction of its own when it has one."""
        body = encode_json(result, request.route_handler.default_serializer)
        if request.scope["state"].get(IDEMPOTENCY_STATE) is not None:
            try:
                async with transaction(self.engine) as conn:
                    await _remember(conn, request, body)
            except KeyTaken:
                if (replayed := await replay_after_failure(request, self)) is None:
                    raise
                return replayed
        return _answer(request, body)


class KeyTaken(Conflict):
    """A live key was stored by a concurrent duplicate: this transaction rolls back and that one's
    response answers; 409 only if it is gone by then (expired in between)."""

    def __init__(self) -> None:
        super().__init__("idempotency_key_in_progress", "another request with this Idempotency-Key won")


async def _remember(conn: AsyncConnection, request: Any, body: bytes) -> None:
    idem = request.scope["state"].get(IDEMPOTENCY_STATE)
    handler = request.route_handler
    if idem is not None and not await store_response(
        conn, idem, handler.status_code, body, handler.media_type
    ):
        raise KeyTaken


def _answer(request: Any, body: bytes) -> Response[Any]:
    handler = request.route_handler
    return Response(body, status_code=handler.status_code, media_type=handler.media_type)


def provide_resources(state: State) -> Resources:
    resources: Resources = state.resources
    return resources


ResourcesDep = NamedDependency[Resources]
