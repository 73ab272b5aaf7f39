"""Every connection carries the configured statement timeout and the contract's RLS setting."""

from dataclasses import replace

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from caracal.db.engine import create_engine
from caracal.settings import Settings


async def test_connections_use_the_configured_statement_timeout(settings: Settings) -> None:
    """CARACAL_DB_STATEMENT_TIMEOUT_MS becomes statement_timeout; a slower statement is cancelled."""
    engine = create_engine(replace(settings, db_statement_timeout_ms=1234), pool_size=1)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW statement_timeout"))).scalar() == "1234ms"
            assert (await conn.execute(text("SELECT current_setting('caracal.zone_id')"))).scalar() == "*"
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError, match="statement timeout"):
                await conn.execute(text("SELECT pg_sleep(3)"))
    finally:
        await engine.dispose()


async def test_pool_size_follows_the_setting(settings: Settings) -> None:
    """CARACAL_DB_POOL_MAX sizes the pool, with no overflow."""
    engine = create_engine(replace(settings, db_pool_max=7))
    try:
        assert engine.pool.size() == 7  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
