"""The one way to emit an event: an event_outbox row written in the caller's transaction."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.tables.outbox import event_outbox
from caracal.events import CHANGES, Scalar
from caracal.ids import new_id
from caracal.telemetry import current_traceparent

# built once; txid and seq come from the column defaults (the writing transaction, commit order)
_INSERT = insert(event_outbox)
log = logging.getLogger("caracal.outbox")
WAKE_TIMEOUT_S = 0.5
WAKE_CHANNEL = "caracal:outbox:wake"


async def record_event(
    conn: AsyncConnection,
    stream: str,
    payload: Mapping[str, Scalar],
    *,
    request_id: str | None = None,
) -> str:
    """Insert the event in the current transaction; it reaches its stream only if that commits."""
    outbox_id = new_id()
    await conn.execute(
        _INSERT,
        {
            "id": outbox_id,
            "stream_name": stream,
            "payload_json": dict(payload),
            "request_id": request_id,
            "traceparent": current_traceparent(),  # NULL unless the writer is traced
        },
    )
    return outbox_id


# Many events of one stream in one statement (two array parameters, so one prepared form for any
# count); WITH ORDINALITY keeps the given order in `seq`, which is the order the stream gets.
_INSERT_MANY = text(
    """
    INSERT INTO event_outbox (id, stream_name, payload_json, request_id, traceparent)
    SELECT e.id, :stream, e.payload::jsonb, :request_id, :traceparent
      FROM unnest(CAST(:ids AS text[]), CAST(:payloads AS text[])) WITH ORDINALITY AS e(id, payload, n)
     ORDER BY e.n
    """
)


async def record_events(
    conn: AsyncConnection,
    stream: str,
    payloads: Sequence[Mapping[str, Scalar]],
    *,
    request_id: str | None = None,
) -> list[str]:
    """`record_event` for each payload, in order, in one round trip; returns the outbox ids."""
    ids = [new_id() for _ in payloads]
    if ids:
        await conn.execute(
            _INSERT_MANY,
            {
                "stream": stream,
                "ids": ids,
                "payloads": [json.dumps(dict(payload)) for payload in payloads],
                "request_id": request_id,
                "traceparent": current_traceparent(),
            },
        )
    return ids


async def record_change(
    conn: AsyncConnection,
    event: str,
    *,
    entity_type: str,
    entity_id: str,
    zone_id: str | None,
    request_id: str | None = None,
) -> str:
    """A `caracal.changes` entry: what changed (`zone.created`, ...), in which zone, which entity."""
    payload = change_payload(event, entity_type=entity_type, entity_id=entity_id, zone_id=zone_id)
    return await record_event(conn, CHANGES, payload, request_id=request_id)


def change_payload(event: str, *, entity_type: str, entity_id: str, zone_id: str | None) -> dict[str, Scalar]:
    """The fields of a `caracal.changes` entry (for `record_change`, or many through `record_events`)."""
    return {"event": event, "zone_id": zone_id, "entity_type": entity_type, "entity_id": entity_id}


_PRUNE = text(
    """
    DELETE FROM event_outbox WHERE id IN (
        SELECT id FROM event_outbox
         WHERE dispatched_at IS NOT NULL AND dispatched_at < now() - make_interval(hours => :hours)
         LIMIT :batch)
    """
)


async def prune_delivered(conn: AsyncConnection, retention_hours: int, batch: int = 5000) -> int:
    """Delete one bounded batch of rows delivered longer ago than the retention period."""
    result = await conn.execute(_PRUNE, {"hours": retention_hours, "batch": batch})
    return int(result.rowcount or 0)


async def send_wake_hint(redis: Redis) -> bool:
    """Tell the dispatchers to look now, after a commit that wrote events (best effort, never inside
    the transaction: the dispatcher's poll finds what a lost hint announced). True when sent."""
    try:
        await asyncio.wait_for(redis.publish(WAKE_CHANNEL, "1"), WAKE_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError) as exc:
        log.debug("wake-up hint not sent (the dispatcher's poll will find the events): %r", exc)
        return False
    return True
