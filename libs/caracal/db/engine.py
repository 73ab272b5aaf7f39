"""The async engine (SQLAlchemy over asyncpg) and the one translation of driver errors."""

from __future__ import annotations

import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError, ResourceClosedError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from caracal.db.gate import fair_turn, pool_busy
from caracal.db.integrity import UNIQUE_VIOLATION, Violation, refusal_for
from caracal.errors import CaracalError, Unavailable
from caracal.settings import Settings

_CONNECTION_SQLSTATES = ("08", "57P")  # connection exceptions, operator intervention (shutdown)
_KEY_COLUMNS = re.compile(r"^\w+ \(([^)]*)\)=")  # "Key (zone_id)=(…) …" of a key violation's detail
R = TypeVar("R")
AFTER_COMMIT = "caracal.after_commit"  # key in Connection.info: messages for after the commit
# a unique key's violation as a statement raises it: through SQLAlchemy, or bare on the driver (db.query)
UNIQUE_VIOLATIONS = (IntegrityError, asyncpg.exceptions.UniqueViolationError)


def asyncpg_url(url: str) -> str:
    """SQLAlchemy's form of a postgresql:// URL."""
    return re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql+asyncpg://", url)


def plain_url(url: str) -> str:
    """asyncpg's (and psql's) form of the URL."""
    return re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql://", url)


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    database_url, _ = settings.require_servers()
    return create_async_engine(
        asyncpg_url(database_url),
        pool_size=pool_size or settings.db_pool_max,
        max_overflow=0,
        # (no pre-ping, SQLAlchemy's default: it would cost a round trip per checkout; a connection
        # that fails is discarded with the rest of the pool, and reads are retried once: read_retried)
        pool_use_lifo=True,  # a warm connection (its prepared statements cached) serves the next request
        hide_parameters=True,  # statement parameters may hold sealed secrets: never in logs
        pool_timeout=settings.db_pool_timeout_ms / 1000,
        connect_args={
            "timeout": 5,
            "command_timeout": max(settings.db_statement_timeout_ms / 1000 + 5, 10),
            "server_settings": server_settings(settings),
        },
    )


def server_settings(settings: Settings) -> dict[str, str]:
    """Session settings of every connection: the statement and idle-transaction timeouts (a
    transaction left open by a stuck process ends, releasing its row locks and the outbox's xmin
    horizon) and the contract's RLS GUC."""
    return {
        "statement_timeout": str(settings.db_statement_timeout_ms),
        "idle_in_transaction_session_timeout": str(settings.db_idle_tx_timeout_ms),
        "caracal.zone_id": "*",
    }


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One write transaction, committed explicitly on success; driver errors become CaracalErrors."""
    try:
        async with fair_turn(engine), engine.connect() as conn, conn.begin():
            yield conn
    except CaracalError:
        raise
    except Exception as exc:
        raise _meaning(exc) from exc


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One pooled connection in autocommit, for reads and for a write that is one statement: each
    statement is its own round trip and its own transaction, with no BEGIN/COMMIT around it. Driver
    errors become CaracalErrors."""
    try:
        async with fair_turn(engine):
            conn = ReadConnection(engine, await greenlet_spawn(engine.sync_engine.raw_connection))
            try:
                yield conn
            finally:
                await conn.release()
    except CaracalError:
        raise
    except Exception as exc:
        raise _meaning(exc) from exc


class ReadConnection(AsyncConnection):
    """A read's pooled connection, checked out without SQLAlchemy's Connection around it: a hot read
    (`db.query.Query`) runs on `driver`, so a GET pays for neither the Connection nor its events
    (measured: 4-5 % of a GET's CPU). The first statement that goes through SQLAlchemy wraps the same
    pooled connection in an autocommit Connection, and the rest of the read uses that."""

    def __init__(self, engine: AsyncEngine, pooled: PoolProxiedConnection) -> None:
        super().__init__(engine)
        self.pooled: PoolProxiedConnection | None = pooled
        self._info: dict[Any, Any] = {}

    @property
    def info(self) -> dict[Any, Any]:
        """This checkout's own notes (`after_commit`): reading them makes no SQLAlchemy Connection."""
        return self._info

    @property
    def driver(self) -> asyncpg.Connection | None:
        """asyncpg's connection, while no statement went through SQLAlchemy (then: None)."""
        if self.sync_connection is not None or self.pooled is None:
            return None
        driver: asyncpg.Connection = self.pooled.driver_connection
        return driver

    @property
    def _proxied(self) -> Connection:
        if self.sync_connection is None:
            if self.pooled is None:
                raise ResourceClosedError("this read's connection was released")
            self.sync_connection = self._assign_proxied(
                Connection(_autocommit(self.engine).sync_engine, connection=self.pooled)
            )
        return self.sync_connection

    def in_transaction(self) -> bool:
        return self.sync_connection is not None and self.sync_connection.in_transaction()

    async def invalidate(self, exception: BaseException | None = None) -> None:
        """A broken connection leaves the pool (it is closed, never reused)."""
        if self.sync_connection is not None:
            await super().invalidate(exception)
        elif self.pooled is not None:
            self.pooled.invalidate(exception)  # closes it without IO and checks the record back in
        self.pooled = None

    async def release(self) -> None:
        """Back to the pool (through SQLAlchemy's Connection when the read made one)."""
        pooled, self.pooled = self.pooled, None
        if self.sync_connection is not None:
            await greenlet_spawn(self.sync_connection.close)
        elif pooled is not None:
            await greenlet_spawn(pooled.close)


_AUTOCOMMIT: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = weakref.WeakKeyDictionary()


def _autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The engine's autocommit view (same pool), made once: per checkout it costs less than an option."""
    view = _AUTOCOMMIT.get(engine)
    if view is None:
        view = _AUTOCOMMIT[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return view


async def read_retried(engine: AsyncEngine, read: Callable[[AsyncConnection], Awaitable[R]]) -> R:
    """An idempotent read, run again once on a fresh connection when its connection turned out broken
    (after a Postgres restart every pooled connection is; the first failure recycles the pool)."""
    try:
        async with autocommit(engine) as conn:
            return await read(conn)
    except Unavailable as exc:
        if exc.code != "postgres_unreachable":
            raise
    async with autocommit(engine) as conn:
        return await read(conn)


def after_commit(conn: AsyncConnection, message: str) -> None:
    """Ask the writer to tell every API process `message` once this transaction has committed
    (cache invalidations such as `token:<id>`); outside the API's writer it goes nowhere."""
    notes = conn.info.get(AFTER_COMMIT)
    if isinstance(notes, list):
        notes.append(message)


def _meaning(exc: BaseException) -> BaseException:
    if isinstance(exc, PoolTimeout):
        return pool_busy()
    return translate_db_error(exc)


def translate_db_error(exc: BaseException) -> BaseException:
    """Map a driver failure to its meaning: lost connection or timeout -> 503; a violated constraint or
    refused value -> the 4xx of the one registry (caracal.db.integrity); anything else unchanged."""
    if is_connection_error(exc):
        return Unavailable("postgres_unreachable", "the database does not answer", dependency="postgres")
    sqlstate = _sqlstate(exc)
    if sqlstate == "57014":
        return Unavailable("statement_timeout", "the database took too long to answer", dependency="postgres")
    refused = refusal_for(_violation(exc, sqlstate)) if sqlstate is not None else None
    return refused if refused is not None else exc


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver failure (under SQLAlchemy's wrapper or bare), when it carries one."""
    return _sqlstate(exc)


def unique_violation_constraint(exc: BaseException) -> str | None:
    """Name of the unique constraint a failed statement violated, if that is why it failed."""
    if _sqlstate(exc) != UNIQUE_VIOLATION:
        return None
    return _violation(exc, UNIQUE_VIOLATION).constraint or ""


def _violation(exc: BaseException, sqlstate: str) -> Violation:
    driver = _driver_error(exc)
    constraint, table = getattr(driver, "constraint_name", None), getattr(driver, "table_name", None)
    key = _KEY_COLUMNS.match(str(getattr(driver, "detail", None) or ""))
    return Violation(
        sqlstate,
        constraint=constraint if isinstance(constraint, str) else None,
        table=table if isinstance(table, str) else None,
        key_columns=tuple(name.strip() for name in key.group(1).split(",")) if key else None,
    )


def _driver_error(exc: BaseException) -> BaseException:
    """asyncpg's own exception, under SQLAlchemy's wrapper (`.orig.__cause__`) or raised bare."""
    cause = getattr(getattr(exc, "orig", None), "__cause__", None)
    return cause if isinstance(cause, BaseException) else exc


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(
        exc, (PoolTimeout, OSError, ConnectionError, asyncpg.exceptions.ConnectionDoesNotExistError)
    ):
        return True
    if isinstance(exc, (OperationalError, InterfaceError)) and (
        getattr(exc, "connection_invalidated", False) or _sqlstate(exc) is None
    ):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    sqlstate = _sqlstate(exc)
    return sqlstate is not None and sqlstate.startswith(_CONNECTION_SQLSTATES)


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    for source in (orig, getattr(orig, "__cause__", None), exc):
        code = getattr(source, "sqlstate", None)
        if isinstance(code, str):
            return code
    return None
