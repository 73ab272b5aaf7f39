"""The one way an aggregate announces a change on `caracal.changes`: `<entity>.<verb>` in a zone."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.domain.context import Caller
from caracal.outbox import record_change


async def entity_changed(
    conn: AsyncConnection, event: str, zone_id: str | None, entity_id: str, caller: Caller | None
) -> None:
    """`event` names the entity before its dot (`resource.updated` is about a resource)."""
    await record_change(
        conn,
        event,
        entity_type=event.partition(".")[0],
        entity_id=entity_id,
        zone_id=zone_id,
        request_id=caller.request_id if caller else None,
    )
