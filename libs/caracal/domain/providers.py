"""Credential providers: identifiers, public config and sealed secrets the STS opens, soft delete."""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec
from sqlalchemy import Boolean, bindparam, func, literal_column, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.locks import PROVIDER_IDENTIFIER_PREFIX
from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables.providers import providers
from caracal.domain.context import Caller
from caracal.domain.provider_config import split_config
from caracal.domain.wire import LenientBody, Resource, Text, Timestamp
from caracal.domain.zones import first_free, require_live_zone, slugify
from caracal.errors import Conflict, InvalidInput, NotFound, Unavailable
from caracal.ids import new_id
from caracal.outbox import record_change
from caracal.sealing import seal_secret_config
from caracal.timefmt import iso_ms

ProviderKind = Literal[
    "none",
    "caracal_mandate",
    "oauth2_authorization_code",
    "oauth2_client_credentials",
    "api_key",
    "bearer_token",
]
IDENTIFIER_PREFIX = "provider://"
# No length in the contract; a unique btree entry cannot exceed ~2700 bytes (generated ones stay below).
IDENTIFIER_MAX = 2000
IDENTIFIER_ATTEMPTS = 3  # an auto identifier lost to a concurrent writer is chosen again, then 409
_IDENTIFIER = re.compile(r"^provider://[a-z0-9]+(?:-[a-z0-9]+)*$")
NONE_IDENTIFIER = "provider://none"
NONE_NAME = "No credential"


class ProviderCreate(LenientBody):
    kind: ProviderKind
    name: Text | msgspec.UnsetType = msgspec.UNSET
    identifier: Text | msgspec.UnsetType = msgspec.UNSET
    config_json: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class ProviderUpdate(LenientBody):
    name: Text | msgspec.UnsetType = msgspec.UNSET
    identifier: Text | msgspec.UnsetType = msgspec.UNSET
    kind: ProviderKind | msgspec.UnsetType = msgspec.UNSET
    config_json: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


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


_COLUMNS = (
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
_ONE = (
    providers.c.zone_id == bindparam("zone"),
    providers.c.id == bindparam("provider"),
    providers.c.archived_at.is_(None),
)
_LIVE = select(*_COLUMNS, *_SEALED).where(*_ONE)
_LIVE_FOR_UPDATE = _LIVE.with_for_update()
_GET = Query(select(*_COLUMNS).where(*_ONE))
_PAGE = PagedQuery(
    select(*_COLUMNS).where(providers.c.zone_id == bindparam("zone"), providers.c.archived_at.is_(None)),
    providers.c.created_at,
    providers.c.id,
)
_TAKEN = select(providers.c.identifier).where(
    providers.c.zone_id == bindparam("zone"),
    providers.c.archived_at.is_(None),
    (providers.c.identifier == bindparam("base"))
    | providers.c.identifier.startswith(bindparam("base_prefix")),
)
# an identifier another creator took meanwhile returns no row (no savepoint needed)
_INSERT = (
    pg_insert(providers)
    .on_conflict_do_nothing(
        index_elements=[providers.c.zone_id, providers.c.identifier],
        index_where=providers.c.archived_at.is_(None),
    )
    .returning(*_COLUMNS)
)
_ANY_SEALED = select(providers.c.id).where(providers.c.secret_config_ct.is_not(None)).limit(1)
_IDENTIFIER_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:key))")
_ARCHIVE = (
    update(providers)
    .where(*_ONE)
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


async def provider_changed(
    conn: AsyncConnection, event: str, provider_id: str, zone_id: str, caller: Caller | None
) -> None:
    await record_change(
        conn,
        event,
        entity_type="provider",
        entity_id=provider_id,
        zone_id=zone_id,
        request_id=caller.request_id if caller else None,
    )


def _not_found(provider_id: str) -> NotFound:
    return NotFound("provider_not_found", f"provider {provider_id} does not exist in this zone")


async def require_live_provider(
    conn: AsyncConnection, zone_id: str, provider_id: str, *, lock: bool = False
) -> Any:
    """The provider row (sealed columns included): 404 provider_not_found when missing or archived."""
    statement = _LIVE_FOR_UPDATE if lock else _LIVE
    row = (await conn.execute(statement, {"zone": zone_id, "provider": provider_id})).first()
    if row is None:
        raise _not_found(provider_id)
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
        await provider_changed(conn, event, provider_id, zone_id, caller)
    return provider_id


async def providers_hold_secrets(conn: AsyncConnection) -> bool:
    """Whether any provider row holds a sealed secret (then ZONE_KEK must be set outside dev mode)."""
    return bool((await conn.execute(_ANY_SEALED)).scalar())


async def list_providers(conn: AsyncConnection, zone_id: str, page: Page) -> Listing[Provider]:
    return listing(await _PAGE.rows(conn, page, zone=zone_id), page, provider_wire)


async def get_provider(conn: AsyncConnection, zone_id: str, provider_id: str) -> Provider:
    row = await _GET.first(conn, {"zone": zone_id, "provider": provider_id})
    if row is None:
        raise _not_found(provider_id)
    return provider_wire(row)


async def delete_provider(conn: AsyncConnection, zone_id: str, provider_id: str, caller: Caller) -> None:
    """Archive; resources naming it keep naming it (nothing cascades on archive)."""
    result = await conn.execute(_ARCHIVE, {"zone": zone_id, "provider": provider_id})
    if result.first() is None:
        raise _not_found(provider_id)
    await provider_changed(conn, "provider.deleted", provider_id, zone_id, caller)


# --- create and update -------------------------------------------------------------------------------


def _present(value: str | msgspec.UnsetType) -> str | None:
    """A trimmed value; whitespace-only counts as absent (CONTRACT.md §4.4)."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def checked_identifier(identifier: str) -> str:
    if len(identifier) > IDENTIFIER_MAX or not _IDENTIFIER.match(identifier):
        message = f"identifier must match provider://<lowercase words joined by ->, got {identifier!r}"[:300]
        raise InvalidInput("invalid_provider_identifier", message, message=message)
    return identifier


def identifier_base(name: str | None, kind: str) -> str:
    """provider:// + slug of the name (less a leading provider://), else of `<kind> provider`."""
    text_ = (name or "").removeprefix(IDENTIFIER_PREFIX).strip() or f"{kind} provider"
    return IDENTIFIER_PREFIX + slugify(text_, "provider")


def _sealed_columns(zone_kek: bytes | None, secrets: dict[str, str]) -> dict[str, Any]:
    if not secrets:
        return {"secret_config_ct": None, "secret_config_nonce": None, "secret_config_keys": []}
    if zone_kek is None:
        raise Unavailable(
            "zone_kek_missing",
            "ZONE_KEK is not configured, so provider secrets cannot be sealed; set ZONE_KEK (64 hex)",
        )
    sealed = seal_secret_config(zone_kek, secrets)
    return {
        "secret_config_ct": sealed.ciphertext,
        "secret_config_nonce": sealed.nonce,
        "secret_config_keys": list(sealed.keys),
    }


def _identifier_conflict(identifier: str) -> Conflict:
    return Conflict("provider_identifier_conflict", f"identifier {identifier!r} is taken in this zone")


async def _taken_identifiers(conn: AsyncConnection, zone_id: str, base: str) -> set[str]:
    found = await conn.execute(_TAKEN, {"zone": zone_id, "base": base, "base_prefix": f"{base}-"})
    return set(found.scalars().all())


async def _insert_with_free_identifier(
    conn: AsyncConnection, base: str, name: str | None, values: dict[str, Any]
) -> Any:
    # creators of one base identifier in a zone take turns (until commit); the retry covers writers
    # that do not take the lock (an explicit identifier, another implementation's API)
    await conn.execute(_IDENTIFIER_LOCK, {"key": f"{PROVIDER_IDENTIFIER_PREFIX}{values['zone_id']}:{base}"})
    for _attempt in range(IDENTIFIER_ATTEMPTS):
        identifier = first_free(base, await _taken_identifiers(conn, values["zone_id"], base))
        row = (
            await conn.execute(_INSERT, {**values, "identifier": identifier, "name": name or identifier})
        ).first()
        if row is not None:
            return row
    raise _identifier_conflict(base)


async def create_provider(
    conn: AsyncConnection, zone_id: str, data: ProviderCreate, caller: Caller, *, zone_kek: bytes | None
) -> Provider:
    await require_live_zone(conn, zone_id)
    name, identifier = _present(data.name), _present(data.identifier)
    if name is None and identifier is None:
        raise InvalidInput("invalid_provider", "name or identifier is required")
    if identifier is not None:
        checked_identifier(identifier)
    config = split_config(data.kind, data.config_json or None, secrets_required=True)
    values = {
        "id": new_id(),
        "zone_id": zone_id,
        "provider_kind": data.kind,
        "config_json": config.public,
        **_sealed_columns(zone_kek, config.secrets),
    }
    if identifier is None:
        row = await _insert_with_free_identifier(conn, identifier_base(name, data.kind), name, values)
    else:
        row = (
            await conn.execute(_INSERT, {**values, "identifier": identifier, "name": name or identifier})
        ).first()
        if row is None:
            raise _identifier_conflict(identifier)
    await provider_changed(conn, "provider.created", row.id, zone_id, caller)
    return provider_wire(row)


async def _config_changes(
    conn: AsyncConnection, zone_kek: bytes | None, zone_id: str, provider_id: str, data: ProviderUpdate
) -> dict[str, Any]:
    """The columns a PATCH's kind and config_json write (CONTRACT.md §4.4, "Secrets required")."""
    if not isinstance(data.config_json, dict):
        if isinstance(data.kind, str):
            raise InvalidInput("provider_config_required", "kind needs config_json: the whole new config")
        return {}
    if isinstance(data.kind, str):
        config = split_config(data.kind, data.config_json, secrets_required=True)
        # a new kind drops the old secrets even when it has none of its own
        return {
            "provider_kind": data.kind,
            "config_json": config.public,
            **_sealed_columns(zone_kek, config.secrets),
        }
    row = await require_live_provider(conn, zone_id, provider_id, lock=True)
    config = split_config(
        row.provider_kind, data.config_json, secrets_required=False, stored_secret_keys=row.secret_config_keys
    )
    sealed = _sealed_columns(zone_kek, config.secrets) if config.secrets else {}
    return {"config_json": config.public, **sealed}


async def update_provider(
    conn: AsyncConnection,
    zone_id: str,
    provider_id: str,
    data: ProviderUpdate,
    caller: Caller,
    *,
    zone_kek: bytes | None,
) -> Provider:
    name, identifier = _present(data.name), _present(data.identifier)
    if identifier is not None:
        checked_identifier(identifier)
    changes = await _config_changes(conn, zone_kek, zone_id, provider_id, data)
    changes.update({k: v for k, v in (("name", name), ("identifier", identifier)) if v is not None})
    if not changes:
        raise InvalidInput("no_fields", "nothing to update")
    statement = update(providers).where(*_ONE).values(**changes, updated_at=func.now()).returning(*_COLUMNS)
    row = (await conn.execute(statement, {"zone": zone_id, "provider": provider_id})).first()
    if row is None:
        raise _not_found(provider_id)
    await provider_changed(conn, "provider.updated", provider_id, zone_id, caller)
    return provider_wire(row)
