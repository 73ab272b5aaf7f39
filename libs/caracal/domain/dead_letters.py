"""Dead-lettered outbox events: listed, inspected and requeued by operators (global scope)."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.tables.outbox import event_outbox
from caracal.domain.context import Caller
from caracal.domain.wire import Body, Resource, Text, Timestamp
from caracal.errors import Conflict, NotFound
from caracal.outbox import record_change
from caracal.timefmt import iso_ms

_COLUMNS = (
    event_outbox.c.id,
    event_outbox.c.stream_name,
    event_outbox.c.payload_json,
    event_outbox.c.attempts,
    event_outbox.c.last_error,
    event_outbox.c.request_id,
    event_outbox.c.created_at,
    event_outbox.c.dispatched_at,
    event_outbox.c.dead_at,
    event_outbox.c.available_at,
)
_REQUEUE_BATCH = 1000


OutboxState = Literal["pending", "dispatched", "dead"]


class OutboxEvent(Resource):
    id: str
    stream_name: str
    payload_json: dict[str, Any]
    state: OutboxState
    attempts: int
    last_error: str | None
    request_id: str | None
    created_at: Timestamp
    dispatched_at: Timestamp | None
    dead_at: Timestamp | None


class RequeueResult(Resource):
    requeued: int


class RequeueDead(Body):
    stream: Text | None = None


def outbox_wire(row: Any) -> OutboxEvent:
    state: OutboxState = "dispatched" if row.dispatched_at else "dead" if row.dead_at else "pending"
    return OutboxEvent(
        id=row.id,
        stream_name=row.stream_name,
        payload_json=row.payload_json,
        state=state,
        attempts=row.attempts,
        last_error=row.last_error,
        request_id=row.request_id,
        created_at=iso_ms(row.created_at),
        dispatched_at=iso_ms(row.dispatched_at),
        dead_at=iso_ms(row.dead_at),
    )


DEAD = select(*_COLUMNS).where(event_outbox.c.dispatched_at.is_(None), event_outbox.c.dead_at.is_not(None))
_DEAD_PAGE = PagedQuery(DEAD, event_outbox.c.dead_at, event_outbox.c.id)
_DEAD_OF_STREAM_PAGE = PagedQuery(
    DEAD.where(event_outbox.c.stream_name == bindparam("stream")), event_outbox.c.dead_at, event_outbox.c.id
)


async def list_dead(conn: AsyncConnection, page: Page, stream: str | None = None) -> Listing[OutboxEvent]:
    if stream is None:
        rows = await _DEAD_PAGE.rows(conn, page)
    else:
        rows = await _DEAD_OF_STREAM_PAGE.rows(conn, page, stream=stream)
    return listing(rows, page, outbox_wire, ts_attr="dead_at")


async def get_outbox_event(conn: AsyncConnection, event_id: str) -> OutboxEvent:
    row = (await conn.execute(select(*_COLUMNS).where(event_outbox.c.id == event_id))).first()
    if row is None:
        raise NotFound("outbox_event_not_found", f"outbox event {event_id} does not exist")
    return outbox_wire(row)


# Conditional: only a dead, undelivered row moves, so of two concurrent requeues one finds it dead
# (and updates it) and the other, once the first commits, updates nothing.
_REQUEUE = text(
    """
    UPDATE event_outbox
       SET dead_at = NULL, available_at = now(), attempts = 0, locked_until = NULL,
           txid = pg_current_xact_id(), seq = DEFAULT
     WHERE id = :id AND dispatched_at IS NULL AND dead_at IS NOT NULL
    """
)


async def requeue(conn: AsyncConnection, event_id: str, caller: Caller) -> OutboxEvent:
    """Back into its stream's queue, behind what is pending now (it takes this transaction's place)."""
    if (await conn.execute(_REQUEUE, {"id": event_id})).rowcount != 1:
        current = await get_outbox_event(conn, event_id)  # 404 when there is no such event
        raise Conflict("outbox_event_not_dead", f"outbox event {event_id} is {current.state}")
    await _record_requeued(conn, [event_id], caller)
    return await get_outbox_event(conn, event_id)


async def requeue_dead(conn: AsyncConnection, caller: Caller, stream: str | None = None) -> int:
    """Requeue up to 1000 dead events in their original order; returns how many.

    Emits one `outbox.requeued` change per requeued event, like the single requeue, so a consumer
    sees each event that went back into a queue."""
    query = (
        select(event_outbox.c.id)
        .where(event_outbox.c.dispatched_at.is_(None), event_outbox.c.dead_at.is_not(None))
        .order_by(text("txid"), event_outbox.c.seq)
        .limit(_REQUEUE_BATCH)
        .with_for_update()
    )
    if stream is not None:
        query = query.where(event_outbox.c.stream_name == stream)
    ids = list((await conn.execute(query)).scalars().all())
    if ids:
        # The rows are locked and still dead: every update applies, in this order (it sets their seq).
        await conn.execute(_REQUEUE, [{"id": event_id} for event_id in ids])
        await _record_requeued(conn, ids, caller)
    return len(ids)


async def _record_requeued(conn: AsyncConnection, ids: list[str], caller: Caller) -> None:
    for event_id in ids:
        await record_change(
            conn,
            "outbox.requeued",
            entity_type="outbox_event",
            entity_id=event_id,
            zone_id=None,
            request_id=caller.request_id,
        )


async def dead_count(conn: AsyncConnection) -> int:
    query = select(func.count()).where(
        event_outbox.c.dispatched_at.is_(None), event_outbox.c.dead_at.is_not(None)
    )
    return int((await conn.execute(query)).scalar_one())
