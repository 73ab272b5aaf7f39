"""Creating and changing providers: identifier defaulting, config rules, secrets sealed for the STS."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.locks import PROVIDER_IDENTIFIER_PREFIX
from caracal.db.tables.providers import providers
from caracal.domain.changes import entity_changed
from caracal.domain.context import Caller
from caracal.domain.provider_config import split_config
from caracal.domain.providers import (
    LIVE_PROVIDER,
    PROVIDER_COLUMNS,
    Provider,
    ProviderKind,
    provider_not_found,
    provider_wire,
    require_live_provider,
)
from caracal.domain.wire import LenientBody, Text
from caracal.domain.zones import first_free, require_live_zone, slugify
from caracal.errors import Conflict, InvalidInput, Unavailable
from caracal.ids import new_id
from caracal.sealing import seal_secret_config

IDENTIFIER_PREFIX = "provider://"
# No length in the contract; a unique btree entry cannot exceed ~2700 bytes (generated ones stay below).
IDENTIFIER_MAX = 2000
IDENTIFIER_ATTEMPTS = 3  # an auto identifier lost to a concurrent writer is chosen again, then 409
_IDENTIFIER = re.compile(r"^provider://[a-z0-9]+(?:-[a-z0-9]+)*$")


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
    .returning(*PROVIDER_COLUMNS)
)
_IDENTIFIER_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:key))")


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
    await entity_changed(conn, "provider.created", zone_id, row.id, caller)
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
    statement = (
        update(providers)
        .where(*LIVE_PROVIDER)
        .values(**changes, updated_at=func.now())
        .returning(*PROVIDER_COLUMNS)
    )
    row = (await conn.execute(statement, {"zone": zone_id, "provider": provider_id})).first()
    if row is None:
        raise provider_not_found(provider_id)
    await entity_changed(conn, "provider.updated", zone_id, provider_id, caller)
    return provider_wire(row)
