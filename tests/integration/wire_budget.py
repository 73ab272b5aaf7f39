"""Counting a request's Postgres round trips at the wire: the `counted` app and `measure`.

Each aggregate's budget test (tests/integration/test_request_path*.py) uses these; the fixture is
registered in tests/integration/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import httpx
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.db.engine import create_engine, transaction
from caracal.domain.admin_tokens import seed_env_token
from caracal.settings import Settings
from caracal_api.resources import Resources
from tests.app_pool import bound_app
from tests.pg_wire_counter import WireCounter
from tests.support import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Counted:
    http: httpx.AsyncClient
    wire: WireCounter
    resources: Resources


def _via(database_url: str, port: int) -> str:
    parts = urlsplit(database_url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()


@pytest_asyncio.fixture
async def counted(settings: Settings, engine: AsyncEngine, shared_redis: Redis) -> AsyncIterator[Counted]:
    """The app on its own engine whose connections pass through a wire counter."""
    url = urlsplit(str(settings.database_url))
    wire = WireCounter(url.hostname or "127.0.0.1", url.port or 5432)
    port = await wire.start()
    # the token stays cached from `warm` to the request counted, however slow the machine: a lookup
    # after the cache's 1 s would add a round trip that no route owes
    proxied = replace(settings, database_url=_via(str(settings.database_url), port), auth_cache_ttl_ms=60_000)
    counted_engine = create_engine(proxied, pool_size=4)
    async with transaction(engine) as conn:
        await seed_env_token(conn, ADMIN_TOKEN)
    res = Resources(settings=proxied, engine=counted_engine, redis=shared_redis)
    try:
        with bound_app(res) as app:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://caracal.test") as http:
                yield Counted(http, wire, res)
    finally:
        await res.settled()
        await res.stop()
        await counted_engine.dispose()
        await wire.stop()


async def warm(counted: Counted) -> None:
    """The connection set up and the token cached (its first use also records last_used_at)."""
    assert (await counted.http.get("/v1/zones?limit=1", headers=ADMIN)).status_code == 200
    await counted.resources.settled()


async def measure(counted: Counted, method: str, path: str, body: object = None, expect: int = 200) -> int:
    """Round trips of one request, after the same request warmed the connection and the token cache."""
    await warm(counted)
    counted.wire.reset()
    response = await counted.http.request(method, path, json=body, headers=ADMIN)
    assert response.status_code == expect, response.text
    await counted.resources.settled()
    assert counted.wire.connections <= 1, counted.wire.round_trips
    return counted.wire.total
