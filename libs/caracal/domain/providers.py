"""Credential providers: identifiers, public config and sealed secrets the STS opens, soft delete."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Boolean, bindparam, func, literal_column, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables.providers import providers
from caracal.domain.changes import entity_changed
from caracal.domain.context import Caller
from caracal.domain.wire import Resource, Timestamp
from caracal.errors import NotFound
from caracal.timefmt import iso_ms

ProviderKind = Literal[
    "none",
    "caracal_mandate",
    "oauth2_authorization_code",
    "oauth2_client_credentials",
    "api_key",
    "bearer_token",
]
NONE_IDENTIFIER = "provider://none"
NONE_NAME = "No credential"


class Provider(Resource):
    id: str
    zone_id: str
    name: str
    identifier: str
    kind: str
    config_json: dict[str, Any]
    secret_config_keys: list[str]
    created_at: Timestamp
    updated_at: Timestamp


PROVIDER_COLUMNS = (
    providers.c.id,
    providers.c.zone_id,
    providers.c.name,
    providers.c.identifier,
    providers.c.provider_kind,
    providers.c.config_json,
    providers.c.secret_config_keys,
    providers.c.created_at,
    providers.c.updated_at,
)
_SEALED = (providers.c.secret_config_ct, providers.c.secret_config_nonce)
LIVE_PROVIDER = (
    providers.c.zone_id == bindparam("zone"),
    providers.c.id == bindparam("provider"),
    providers.c.archived_at.is_(None),
)
_LIVE = select(*PROVIDER_COLUMNS, *_SEALED).where(*LIVE_PROVIDER)
_LIVE_FOR_UPDATE = _LIVE.with_for_update()
_GET = Query(select(*PROVIDER_COLUMNS).where(*LIVE_PROVIDER))
_PAGE = PagedQuery(
    select(*PROVIDER_COLUMNS).where(
        providers.c.zone_id == bindparam("zone"), providers.c.archived_at.is_(None)
    ),
    providers.c.created_at,
    providers.c.id,
)
_ANY_SEALED = select(providers.c.id).where(providers.c.secret_config_ct.is_not(None)).limit(1)
_ARCHIVE = (
    update(providers)
    .where(*LIVE_PROVIDER)
    .values(archived_at=func.now(), updated_at=func.now())
    .returning(providers.c.id)
)
# The implicit "no credential" provider: created, or brought back from the archive as it was defined
# (CONTRACT.md §4.3); a live one is left as it is. `xmax = 0` tells an insert from an update.
_ENSURE_NONE = (
    pg_insert(providers)
    .values(
        id=bindparam("provider"),
        zone_id=bindparam("zone"),
        name=NONE_NAME,
        identifier=NONE_IDENTIFIER,
        provider_kind="none",
        config_json=text("'{}'::jsonb"),
    )
    .on_conflict_do_update(
        index_elements=[providers.c.id],
        set_={
            "archived_at": None,
            "name": NONE_NAME,
            "identifier": NONE_IDENTIFIER,
            "provider_kind": "none",
            "config_json": text("'{}'::jsonb"),
            "secret_config_ct": None,
            "secret_config_nonce": None,
            "secret_config_keys": text("'{}'::text[]"),
            "updated_at": func.now(),
        },
        where=providers.c.archived_at.is_not(None),
    )
    .returning(literal_column("(xmax = 0)", Boolean).label("inserted"))
)


def provider_wire(row: Any) -> Provider:
    return Provider(
        id=row.id,
        zone_id=row.zone_id,
        name=row.name,
        identifier=row.identifier,
        kind=row.provider_kind,
        config_json=dict(row.config_json or {}),
        secret_config_keys=sorted(row.secret_config_keys or ()),
        created_at=iso_ms(row.created_at),
        updated_at=iso_ms(row.updated_at),
    )


def none_provider_id(zone_id: str) -> str:
    return f"provider-none-{zone_id}"


def provider_not_found(provider_id: str) -> NotFound:
    return NotFound("provider_not_found", f"provider {provider_id} does not exist in this zone")


async def require_live_provider(
    conn: AsyncConnection, zone_id: str, provider_id: str, *, lock: bool = False
) -> Any:
    """The provider row (sealed columns included): 404 provider_not_found when missing or archived."""
    statement = _LIVE_FOR_UPDATE if lock else _LIVE
    row = (await conn.execute(statement, {"zone": zone_id, "provider": provider_id})).first()
    if row is None:
        raise provider_not_found(provider_id)
    return row


async def ensure_none_provider(conn: AsyncConnection, zone_id: str, caller: Caller | None = None) -> str:
    """The id of the zone's `provider-none-<zoneId>`, created or un-archived when needed.

    A live provider of the zone holding `provider://none` makes this a 409
    provider_identifier_conflict (the partial unique index), not a second such identifier.
    """
    provider_id = none_provider_id(zone_id)
    row = (await conn.execute(_ENSURE_NONE, {"provider": provider_id, "zone": zone_id})).first()
    if row is not None:
        event = "provider.created" if row.inserted else "provider.updated"
        await entity_changed(conn, event, zone_id, provider_id, caller)
    return provider_id


async def providers_hold_secrets(conn: AsyncConnection) -> bool:
    """Whether any provider row holds a sealed secret (then ZONE_KEK must be set outside dev mode)."""
    return bool((await conn.execute(_ANY_SEALED)).scalar())


async def list_providers(conn: AsyncConnection, zone_id: str, page: Page) -> Listing[Provider]:
    return listing(await _PAGE.rows(conn, page, zone=zone_id), page, provider_wire)


async def get_provider(conn: AsyncConnection, zone_id: str, provider_id: str) -> Provider:
    row = await _GET.first(conn, {"zone": zone_id, "provider": provider_id})
    if row is None:
        raise provider_not_found(provider_id)
    return provider_wire(row)


async def delete_provider(conn: AsyncConnection, zone_id: str, provider_id: str, caller: Caller) -> None:
    """Archive; resources naming it keep naming it (nothing cascades on archive)."""
    result = await conn.execute(_ARCHIVE, {"zone": zone_id, "provider": provider_id})
    if result.first() is None:
        raise provider_not_found(provider_id)
    await entity_changed(conn, "provider.deleted", zone_id, provider_id, caller)
