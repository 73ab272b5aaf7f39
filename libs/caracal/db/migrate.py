"""Schema migrations (Alembic), run under a Postgres advisory lock so replicas can start together."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from caracal.db.locks import MIGRATION_LOCK_KEY

log = logging.getLogger("caracal.migrate")


def migrations_dir() -> Path:
    packaged = Path(__file__).resolve().parents[1] / "migrations"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[3] / "migrations"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest revision on disk (read once: /ready asks on every call)."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection) -> list[str]:
    """Apply what is missing; returns the revisions applied (empty when already at head)."""
    before = _current(connection)
    script = ScriptDirectory.from_config(_config())
    head = script.get_current_head()
    if before == head:
        return []
    pending = [rev.revision for rev in script.iterate_revisions(head, before)]
    command.upgrade(_config(connection), "head")
    return list(reversed(pending))


async def run_migrations(engine: AsyncEngine) -> list[str]:
    """Upgrade to head while holding the migration lock; a waiting replica then finds nothing to do."""
    async with engine.connect() as conn:
        log.info("migrations: waiting for the migration lock")
        await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        await conn.commit()
        try:
            applied = await conn.run_sync(_upgrade)
            await conn.commit()
        except BaseException:
            await conn.rollback()  # so the unlock below runs and the original error propagates
            raise
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            await conn.commit()
    if applied:
        log.info("migrations: applied %s", ", ".join(applied))
    else:
        log.info("migrations: schema already at head (%s)", head_revision())
    return applied


async def revision_of(conn: AsyncConnection) -> str | None:
    """The revision the database is at, on a connection the caller already holds."""
    return await conn.run_sync(_current)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await revision_of(conn)


async def wait_for_schema(engine: AsyncEngine, stopped: Callable[[], bool], poll: float = 1.0) -> bool:
    """Workers start with the API: wait until its migrations reach head; False if stopped first."""
    head = head_revision()
    logged = False
    while not stopped():
        try:
            if await current_revision(engine) == head:
                return True
        except Exception as exc:
            log.debug("schema check failed: %r", exc)
        if not logged:
            log.info("waiting for migrations to reach %s (the API runs them at start)", head)
            logged = True
        await asyncio.sleep(poll)
    return False
