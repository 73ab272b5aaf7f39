"""Hot statements: a SELECT (or a write that is one statement, see domain.audit.audited)
written once in SQLAlchemy Core, compiled once, run on the driver's connection.

SQLAlchemy's execution layer costs more CPU per statement than the round trip itself (measured: a
GET of one zone spent 0.38 ms of its 1.0 ms there). In autocommit nothing is lost by going round it:
the statement is the same one the table definitions build, compiled for asyncpg at import time, and
asyncpg caches its prepared form per connection. Inside a transaction the statement goes through
SQLAlchemy as usual, so it can never run outside the transaction SQLAlchemy began lazily.
"""

from __future__ import annotations

from typing import Any, cast

import asyncpg
from sqlalchemy import Select
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import JSON

from caracal.db.engine import ReadConnection, is_connection_error
from caracal.errors import Unavailable

_DIALECT = cast("Any", PGDialect_asyncpg)()  # the dialect's constructor is untyped
# While SQL spans are recorded (caracal.telemetry.instrument_clients), every statement goes through
# SQLAlchemy's engine, whose events make the spans: a traced request shows all of its statements.
_TRACED = {"sqlalchemy": False}


def statements_traced(on: bool) -> None:
    _TRACED["sqlalchemy"] = on


def _column(row: Any, name: str) -> Any:
    try:
        return row[name]
    except KeyError:
        raise AttributeError(name) from None


# A driver row read like a SQLAlchemy row (`row.name`), so wire builders take either.
Row: Any = type("Row", (asyncpg.Record,), {"__getattr__": _column, "__slots__": ()})


def _lost_connection(exc: BaseException) -> bool:
    return is_connection_error(exc) or isinstance(
        exc, (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError, asyncpg.PostgresConnectionError)
    )


class Query:
    def __init__(self, statement: Select[Any]) -> None:
        # SQLAlchemy decodes JSON columns and the raw driver would not: such reads go through it
        self.via_sqlalchemy = any(isinstance(c.type, JSON) for c in statement.selected_columns)
        compiled = statement.compile(dialect=_DIALECT)
        self.statement = statement
        self.sql = str(compiled)
        self.names = tuple(compiled.positiontup or ())

    async def rows(self, conn: AsyncConnection, params: dict[str, Any]) -> list[Any]:
        driver = None if self.via_sqlalchemy or _TRACED["sqlalchemy"] else await _driver_of(conn)
        if driver is None:
            return list((await conn.execute(self.statement, params)).all())
        try:
            return list(await driver.fetch(self.sql, *(params[n] for n in self.names), record_class=Row))
        except Exception as exc:
            if not _lost_connection(exc):
                raise  # the one translation (db.engine) reads driver errors as they are
            # This connection is gone, and after a restart so is every other in the pool: discard it
            # and start a new pool, so the caller's one retry gets a fresh connection.
            await conn.invalidate()
            await conn.engine.dispose(close=False)
            raise Unavailable(
                "postgres_unreachable", "the database does not answer", dependency="postgres"
            ) from exc

    async def first(self, conn: AsyncConnection, params: dict[str, Any]) -> Any | None:
        found = await self.rows(conn, params)
        return found[0] if found else None


async def _driver_of(conn: AsyncConnection) -> asyncpg.Connection | None:
    """The driver connection to run on, when SQLAlchemy has no transaction on it."""
    if isinstance(conn, ReadConnection):
        return conn.driver
    if conn.in_transaction():
        return None
    return cast("asyncpg.Connection", (await conn.get_raw_connection()).driver_connection)
