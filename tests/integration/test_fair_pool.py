"""Checkouts through caracal.db.engine take turns: a caller that just gave its connection back and asks
again waits behind those already waiting (SQLAlchemy's queue alone lets it take the connection again)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from caracal.db.engine import autocommit, create_engine, transaction
from caracal.settings import Settings

CALLERS, ROUNDS = 4, 5
Checkout = Callable[[AsyncEngine], AbstractAsyncContextManager[AsyncConnection]]


@pytest.fixture
async def one_connection(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.mark.parametrize("checkout", [autocommit, transaction], ids=["autocommit", "transaction"])
async def test_callers_asking_again_at_once_take_turns(
    one_connection: AsyncEngine, checkout: Checkout
) -> None:
    turns: list[int] = []

    async def caller(n: int) -> None:
        for _ in range(ROUNDS):  # a closed loop: ask again as soon as the connection is back
            async with checkout(one_connection) as conn:
                turns.append(n)
                await conn.execute(text("SELECT 1"))

    async with checkout(one_connection):  # every caller queues up behind this holder first
        tasks = [asyncio.create_task(caller(n)) for n in range(CALLERS)]
        for _ in range(10):
            await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert turns == list(range(CALLERS)) * ROUNDS
