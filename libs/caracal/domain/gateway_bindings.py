"""The Gateway's bindings of resource identifiers to applications, and the revision it polls.

The Gateway reads `gateway_resource_bindings` again whenever `gateway_binding_revision.version`
changes (CONTRACT.md §5.5), so every change of a binding bumps it in the same transaction.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# One statement: the identifiers left unbound go, the bound one is upserted, the revision moves.
# Unbound and bound identifiers are never the same row, so the two CTEs cannot touch one row twice.
_SYNC = text(
    """
    WITH unbound AS (
        DELETE FROM gateway_resource_bindings
         WHERE zone_id = CAST(:zone_id AS text)
           AND resource_identifier = ANY(CAST(:unbind AS text[]))
    ), bound AS (
        INSERT INTO gateway_resource_bindings (zone_id, resource_identifier, application_id)
        SELECT CAST(:zone_id AS text), CAST(:identifier AS text), CAST(:application_id AS text)
         WHERE CAST(:application_id AS text) IS NOT NULL
        ON CONFLICT (zone_id, resource_identifier)
        DO UPDATE SET application_id = EXCLUDED.application_id, updated_at = now()
    )
    UPDATE gateway_binding_revision SET version = version + 1, updated_at = now() WHERE id = true
    """
)


async def sync_binding(
    conn: AsyncConnection,
    zone_id: str,
    identifier: str,
    application_id: str | None,
    *,
    previous_identifier: str | None = None,
) -> None:
    """Bind `identifier` to the application, or unbind it when there is none; a previous identifier
    (the resource was renamed) loses its binding. The Gateway sees it all at the next revision."""
    unbind = [] if application_id is not None else [identifier]
    if previous_identifier is not None and previous_identifier != identifier:
        unbind.append(previous_identifier)
    await conn.execute(
        _SYNC,
        {"zone_id": zone_id, "identifier": identifier, "application_id": application_id, "unbind": unbind},
    )
