"""Entity tags: what an object's strong ETag is, and how If-Match and If-None-Match compare it.

An object's tag is the lowercase hex SHA-256 of the exact JSON bytes its GET answers (the same
msgspec encoding the response uses), quoted: it changes whenever the representation does, and a
GET computes it without another round trip. Bundles use the same form over their own bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

import msgspec
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.tables import entity_of, metadata
from caracal.errors import CaracalError

ANY = "*"
WEAK = "W/"


class PreconditionFailed(CaracalError):
    status = 412
    title = "Precondition Failed"


def etag_of_bytes(body: bytes) -> str:
    return f'"{hashlib.sha256(body).hexdigest()}"'


def etag_of(representation: Any) -> str:
    """The strong tag of a response Struct: the hash of the bytes its JSON response carries."""
    return etag_of_bytes(msgspec.json.encode(representation))


def _listed(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def if_match_holds(header: str | None, *current: str) -> bool:
    """If-Match (RFC 9110 §13.1.1): absent, `*`, or a listed tag strongly equal to a current one.

    A weak tag never matches: If-Match uses the strong comparison.
    """
    if header is None:
        return True
    tags = _listed(header)
    return ANY in tags or any(tag in current for tag in tags if not tag.startswith(WEAK))


def if_none_match_holds(header: str | None, current: str) -> bool:
    """If-None-Match (RFC 9110 §13.1.2): `*` or a listed tag weakly equal to the current one."""
    if header is None:
        return False
    tags = [tag.removeprefix(WEAK) for tag in _listed(header)]
    return ANY in tags or current.removeprefix(WEAK) in tags


def require_if_match(header: str | None, representation: Any, detail: str) -> None:
    """412 `precondition_failed` unless If-Match holds for this representation's tag."""
    if not if_match_holds(header, etag_of(representation)):
        raise PreconditionFailed("precondition_failed", detail)


@cache
def _table_of(entity: str) -> Table:
    return next(table for table in metadata.tables.values() if entity_of(table) == entity)


async def lock_for_compare(
    conn: AsyncConnection, entity: str, object_id: str, zone_id: str | None = None
) -> None:
    """Lock the object's row for the rest of the write transaction before its tag is compared, so a
    concurrent write (conditional or not) waits and the comparison stays true until the commit.

    `FOR NO KEY UPDATE` is the lock an UPDATE takes: it queues behind other writers of the row but
    lets children referencing it (foreign-key checks) go on.
    """
    table = _table_of(entity)
    statement = select(table.c.id).where(table.c.id == object_id)
    if zone_id is not None:
        statement = statement.where(table.c.zone_id == zone_id)
    await conn.execute(statement.with_for_update(key_share=True))


async def require_unchanged(
    conn: AsyncConnection,
    if_match: str | None,
    entity: str,
    key: tuple[str | None, str],
    current: Callable[[], Awaitable[Any]],
) -> None:
    """A conditional write's precondition, inside its transaction: with If-Match, the object's row
    (`key` = zone id or None, object id) is locked and its current representation's tag compared;
    412 without writing anything when no listed tag matches. Without If-Match: nothing, no round trip.
    A missing object stays the route's 404 (`current` raises it)."""
    if if_match is None:
        return
    zone_id, object_id = key
    await lock_for_compare(conn, entity, object_id, zone_id)
    require_if_match(if_match, await current(), f"the {entity} changed since its ETag was read")
