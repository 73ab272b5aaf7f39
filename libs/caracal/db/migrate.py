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


def revisions_behind(current: str | None) -> list[str] | None:
    """The revisions the code ships beyond `current`, oldest first; None when `current` is unknown
    to this code (a newer release migrated the database)."""
    script = ScriptDirectory.from_config(_config())
    if current is not None and current not in {rev.revision for rev in script.walk_revisions()}:
        return None
    return [rev.revision for rev in reversed(list(script.iterate_revisions("head", current)))]


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
            await _release_after_failure(conn)
            raise
        await _unlock(conn)
    if applied:
        log.info("migrations: applied %s", ", ".join(applied))
    else:
        log.info("migrations: schema already at head (%s)", head_revision())
    return applied


async def _unlock(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
    await conn.commit()


async def _release_after_failure(conn: AsyncConnection) -> None:
    """Roll back and unlock, never masking the migration's own error (the caller re-raises it).

    On a lost connection the lock died with its session; the unlock then runs on a new one (a no-op)
    or fails, and either way the first error is the one that propagates."""
    for step, run in (("rollback", conn.rollback), ("unlock", lambda: _unlock(conn))):
        try:
            await run()
        except Exception:
            log.warning("migrations: %s after a failed migration also failed", step, exc_info=True)
            return


async def revision_of(conn: AsyncConnection) -> str | None:
    """The revision the database is at, on a connection the caller already holds."""
    return await conn.run_sync(_current)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await revision_of(conn)


class DatabaseRefused(SystemExit):
    """The database refuses this configuration (credentials, database name): waiting cannot help.

    A SystemExit, like a configuration error: the worker's cleanup runs as it propagates, then the
    process exits with this code (the line saying why is logged before)."""

    exit_code = 3


# Class 28: invalid authorization (wrong password, unknown role); 3D000: the database does not exist.
_FATAL_SQLSTATES = ("28", "3D000")


async def wait_for_schema(engine: AsyncEngine, stopped: Callable[[], bool], poll: float = 1.0) -> bool:
    """Workers start with the API: wait until its migrations reach head; False if stopped first.

    Each distinct reason for not reaching the schema is logged once at warning; a refusal that no
    amount of waiting fixes raises DatabaseRefused (the process exits non-zero with one line)."""
    head = head_revision()
    causes: set[str] = set()
    while not stopped():
        try:
            if await current_revision(engine) == head:
                return True
            cause, level = f"the schema is not at {head} yet (the API migrates at start)", logging.INFO
        except Exception as exc:
            cause, level = _refusal_or_cause(exc), logging.WARNING
        if cause not in causes:
            causes.add(cause)
            log.log(level, "waiting for the schema (retrying every %.1fs): %s", poll, cause)
        await asyncio.sleep(poll)
    return False


def _refusal_or_cause(exc: Exception) -> str:
    """One line naming why the check failed; raises DatabaseRefused when retrying cannot help."""
    chain = _chain(exc)
    root = chain[-1]
    cause = f"{type(root).__name__}: {str(root).splitlines()[0] if str(root) else ''}".rstrip(": ")
    sqlstates = [code for code in (getattr(e, "sqlstate", None) for e in chain) if isinstance(code, str)]
    if any(code.startswith(_FATAL_SQLSTATES) for code in sqlstates):
        log.critical("the database refused the connection (check DATABASE_URL): %s; exiting", cause)
        raise DatabaseRefused(DatabaseRefused.exit_code) from exc
    return cause


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, SQLAlchemy's wrapped driver error and their causes, outermost first."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found:
        found.append(current)
        current = getattr(current, "orig", None) or current.__cause__
    return found
