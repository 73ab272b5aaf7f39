"""Provider grants: a user's upstream OAuth tokens for a resource's provider, sealed for the STS.

At most one active grant per (zone, user, resource, provider): a new one for the same tuple overwrites
the active row in place (its id stays), through the partial unique index, so concurrent writers cannot
leave two. A revoked grant's sealed tokens are wiped: nothing may use them any more (CONTRACT.md §4.8).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import bindparam, func, literal_column, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.tables.grants import provider_grants
from caracal.domain.changes import entity_changed
from caracal.domain.context import Caller
from caracal.domain.providers import require_live_provider
from caracal.domain.resources import require_live_resource
from caracal.domain.wire import LenientBody, Name, Resource, Scopes, Timestamp, UtcTimestamp, utc_datetime
from caracal.domain.zones import require_live_zone
from caracal.errors import Forbidden, InvalidInput, NotFound, Unavailable
from caracal.ids import new_id
from caracal.sealing import seal_token
from caracal.timefmt import iso_ms

GRANTABLE_KIND = "oauth2_authorization_code"


class ProviderGrantCreate(LenientBody):
    user_id: Name
    resource_id: Name
    provider_id: Name
    scopes: Scopes
    access_token: Name
    refresh_token: Name | msgspec.UnsetType = msgspec.UNSET
    expires_at: UtcTimestamp | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if isinstance(self.expires_at, str):
            utc_datetime(self.expires_at)  # an impossible date (02-30) is a bad body, not a 500

    def __repr__(self) -> str:
        return f"ProviderGrantCreate(user_id={self.user_id!r}, provider_id={self.provider_id!r})"


class ProviderGrantRevoke(LenientBody):
    user_id: Name
    resource_id: Name
    provider_id: Name


class ProviderGrant(Resource):
    id: str
    zone_id: str
    user_id: str
    resource_id: str
    provider_id: str
    scopes: list[str]
    status: str
    expires_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


@dataclass(frozen=True, slots=True)
class GrantTarget:
    """Whose grant, for what: the tuple a zone holds at most one active grant for, and its scopes."""

    user_id: str
    resource_id: str
    provider_id: str
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GrantTokens:
    access_token: str
    refresh_token: str | None
    expires_at: dt.datetime | None

    def __repr__(self) -> str:
        return f"GrantTokens(expires_at={self.expires_at!r})"  # the tokens never reach a log line


_COLUMNS = (
    provider_grants.c.id,
    provider_grants.c.zone_id,
    provider_grants.c.user_id,
    provider_grants.c.resource_id,
    provider_grants.c.provider_id,
    provider_grants.c.scopes,
    provider_grants.c.status,
    provider_grants.c.expires_at,
    provider_grants.c.created_at,
    provider_grants.c.updated_at,
)
_TUPLE = ("zone_id", "user_id", "resource_id", "provider_id")
_NEW = pg_insert(provider_grants)
_UPSERT = _NEW.on_conflict_do_update(
    index_elements=[provider_grants.c[name] for name in _TUPLE],
    index_where=text("status = 'active'"),  # a literal: the partial index is inferred from it
    set_={
        "scopes": _NEW.excluded.scopes,
        "access_token_ct": _NEW.excluded.access_token_ct,
        "refresh_token_ct": _NEW.excluded.refresh_token_ct,
        "expires_at": _NEW.excluded.expires_at,
        "refreshed_at": None,
        "refresh_token_version": provider_grants.c.refresh_token_version + 1,
        "updated_at": func.now(),
    },
).returning(*_COLUMNS, literal_column("(provider_grants.xmax = 0)").label("inserted"))
_REVOKE = (
    update(provider_grants)
    .where(
        *(provider_grants.c[name] == bindparam(f"b_{name}") for name in _TUPLE),
        provider_grants.c.status == "active",
    )
    .values(status="revoked", access_token_ct=None, refresh_token_ct=None, updated_at=func.now())
    .returning(*_COLUMNS)
)


def provider_grant_wire(row: Any) -> ProviderGrant:
    return ProviderGrant(
        id=row.id,
        zone_id=row.zone_id,
        user_id=row.user_id,
        resource_id=row.resource_id,
        provider_id=row.provider_id,
        scopes=list(row.scopes),
        status=row.status,
        expires_at=iso_ms(row.expires_at) if row.expires_at is not None else None,
        created_at=iso_ms(row.created_at),
        updated_at=iso_ms(row.updated_at),
    )


async def require_grantable(conn: AsyncConnection, zone_id: str, target: GrantTarget) -> Any:
    """The provider row a grant of `target` may hold tokens of, checked in the contract's order."""
    provider = await require_live_provider(conn, zone_id, target.provider_id)
    if provider.provider_kind != GRANTABLE_KIND:
        raise InvalidInput(
            "provider_grant_unsupported",
            f"provider grants need a provider of kind {GRANTABLE_KIND}, not {provider.provider_kind}",
        )
    resource = await require_live_resource(conn, zone_id, target.resource_id)
    if resource.credential_provider_id != target.provider_id:
        raise InvalidInput("provider_resource_mismatch", "the resource's credential provider is another one")
    outside = sorted(set(target.scopes) - set(resource.scopes))
    if outside:
        raise Forbidden("grant_scopes_exceed_resource", f"scopes not on the resource: {', '.join(outside)}")
    return provider


def _sealed(zone_kek: bytes | None, tokens: GrantTokens) -> dict[str, Any]:
    if zone_kek is None:
        raise Unavailable(
            "zone_kek_missing",
            "ZONE_KEK is not configured, so provider-grant tokens cannot be sealed; set ZONE_KEK (64 hex)",
        )
    refresh = tokens.refresh_token
    return {
        "access_token_ct": seal_token(zone_kek, tokens.access_token),
        "refresh_token_ct": seal_token(zone_kek, refresh) if refresh is not None else None,
        "expires_at": tokens.expires_at,
    }


async def upsert_provider_grant(
    conn: AsyncConnection,
    zone_kek: bytes | None,
    zone_id: str,
    target: GrantTarget,
    tokens: GrantTokens,
    *,
    caller: Caller,
) -> ProviderGrant:
    """The tuple's active grant, created or overwritten (same id), after the checks of a new grant."""
    await require_live_zone(conn, zone_id)
    await require_grantable(conn, zone_id, target)
    values = {
        "id": new_id(),
        "zone_id": zone_id,
        "user_id": target.user_id,
        "resource_id": target.resource_id,
        "provider_id": target.provider_id,
        "scopes": list(target.scopes),
        **_sealed(zone_kek, tokens),
    }
    row = (await conn.execute(_UPSERT, values)).one()
    event = "provider_grant.created" if row.inserted else "provider_grant.updated"
    await entity_changed(conn, event, row.zone_id, row.id, caller)
    return provider_grant_wire(row)


async def create_provider_grant(
    conn: AsyncConnection, zone_kek: bytes | None, zone_id: str, data: ProviderGrantCreate, caller: Caller
) -> ProviderGrant:
    target = GrantTarget(data.user_id, data.resource_id, data.provider_id, tuple(data.scopes))
    tokens = GrantTokens(
        data.access_token,
        data.refresh_token if isinstance(data.refresh_token, str) else None,
        utc_datetime(data.expires_at) if isinstance(data.expires_at, str) else None,
    )
    return await upsert_provider_grant(conn, zone_kek, zone_id, target, tokens, caller=caller)


async def revoke_provider_grant(
    conn: AsyncConnection, zone_id: str, data: ProviderGrantRevoke, caller: Caller
) -> ProviderGrant:
    """The tuple's active grant, now revoked, its sealed tokens wiped."""
    params = {"b_zone_id": zone_id, "b_user_id": data.user_id}
    params |= {"b_resource_id": data.resource_id, "b_provider_id": data.provider_id}
    row = (await conn.execute(_REVOKE, params)).first()
    if row is None:
        raise NotFound(
            "provider_grant_not_found", "no active provider grant for this user, resource and provider"
        )
    await entity_changed(conn, "provider_grant.revoked", row.zone_id, row.id, caller)
    return provider_grant_wire(row)
