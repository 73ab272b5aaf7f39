"""The floor of the GET goal: a bare Litestar route doing one asyncpg SELECT, served as ours is.

No auth, no metrics, no logs, no ETag: what issue 6 calibrated its ratio on ("a bare Litestar route
doing one asyncpg SELECT ... reached about 0.53 x B_sel"), measured in the same run as our route so
the README can say how much of the gap is the framework and how much is ours.
Run by bench/api.py: `python -m bench.bare_route` with DATABASE_URL, PORT and BARE_WORKERS.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import uvicorn
from litestar import Litestar, get
from litestar.exceptions import NotFoundException

from bench.api import SELECT_ZONE
from caracal.db.engine import plain_url

POOL: dict[str, asyncpg.Pool] = {}


@asynccontextmanager
async def _pool(_app: Litestar) -> AsyncIterator[None]:
    size = int(os.environ.get("BARE_POOL", "8"))
    url = plain_url(os.environ["DATABASE_URL"])
    POOL["db"] = await asyncpg.create_pool(url, min_size=size, max_size=size)
    try:
        yield
    finally:
        await POOL["db"].close()


@get("/ready", sync_to_thread=False)
def ready() -> dict[str, bool]:
    return {"ok": True}


@get("/zones/{zone_id:str}")
async def zone(zone_id: str) -> dict[str, Any]:
    row = await POOL["db"].fetchrow(SELECT_ZONE, zone_id)
    if row is None:
        raise NotFoundException
    return {**row, "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat()}


app = Litestar([ready, zone], lifespan=[_pool])


def main() -> None:
    uvicorn.run(
        "bench.bare_route:app",
        host="127.0.0.1",
        port=int(os.environ["PORT"]),
        workers=int(os.environ.get("BARE_WORKERS", "2")),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
