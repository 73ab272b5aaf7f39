"""Admin tokens: SHA-256 digests only, scopes and capabilities, env seeding, local bootstrap."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.crypto import digests_equal, new_admin_token, token_digest
from caracal.db.engine import after_commit
from caracal.db.locks import BOOTSTRAP_LOCK_KEY
from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables.admin_tokens import admin_tokens
from caracal.db.tables.zones import zones
from caracal.domain.context import Actor, Caller
from caracal.domain.wire import NO_NUL, Body, Resource, Timestamp
from caracal.domain.zones import require_live_zone
from caracal.errors import Conflict, InvalidInput, NotFound
from caracal.ids import new_id
from caracal.outbox import record_change
from caracal.timefmt import iso_ms

log = logging.getLogger("caracal.admin_tokens")

ENV_BOOTSTRAP = "env-bootstrap"
LOCAL_BOOTSTRAP = "local-bootstrap"


Scope = Literal["global", "zone"]
Capability = Literal["read", "write", "approve"]


class AdminTokenCreate(Body):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=120, pattern=NO_NUL)]
    scope: Scope
    zone_id: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=NO_NUL)] | msgspec.UnsetType
    ) = msgspec.UNSET
    capability: Capability = "write"


_PUBLIC = (
    admin_tokens.c.id,
    admin_tokens.c.name,
    admin_tokens.c.scope,
    admin_tokens.c.capability,
    admin_tokens.c.zone_id,
    admin_tokens.c.created_by,
    admin_tokens.c.created_at,
    admin_tokens.c.last_used_at,
    admin_tokens.c.revoked_at,
)


class _AdminTokenFields(Resource):
    id: str
    name: str
    scope: Scope
    capability: Capability
    zone_id: str | None
    created_by: str
    created_at: Timestamp


class AdminTokenCreated(_AdminTokenFields):
    """The answer to a creation: the only time the token's cleartext is shown."""

    token: str


class AdminToken(_AdminTokenFields):
    """A token as listed: never its secret."""

    last_used_at: Timestamp | None
    revoked_at: Timestamp | None


_PAGE = PagedQuery(select(*_PUBLIC), admin_tokens.c.created_at, admin_tokens.c.id)
_LIVE_ZONE = select(zones.c.id).where(zones.c.id == admin_tokens.c.zone_id, zones.c.archived_at.is_(None))
_AUTHENTICATE = Query(
    select(
        admin_tokens.c.id,
        admin_tokens.c.name,
        admin_tokens.c.scope,
        admin_tokens.c.zone_id,
        admin_tokens.c.capability,
        admin_tokens.c.token_sha256,
    ).where(
        admin_tokens.c.token_sha256 == bindparam("digest"),
        admin_tokens.c.revoked_at.is_(None),
        admin_tokens.c.zone_id.is_(None) | _LIVE_ZONE.exists(),
    )
)


def token_wire(row: Any) -> AdminToken:
    return AdminToken(
        id=row.id,
        name=row.name,
        scope=row.scope,
        capability=row.capability,
        zone_id=row.zone_id,
        created_by=row.created_by,
        created_at=iso_ms(row.created_at),
        last_used_at=iso_ms(row.last_used_at),
        revoked_at=iso_ms(row.revoked_at),
    )


async def authenticate(conn: AsyncConnection, token: str) -> Actor | None:
    """The actor behind a bearer token, or None when it is unknown, revoked, or of an archived zone."""
    digest = token_digest(token)
    row = await _AUTHENTICATE.first(conn, {"digest": digest})
    if row is None or not digests_equal(bytes(row.token_sha256), digest):
        return None
    return Actor(id=row.id, name=row.name, scope=row.scope, zone_id=row.zone_id, capability=row.capability)


async def touch_last_used(conn: AsyncConnection, token_id: str) -> None:
    await conn.execute(
        update(admin_tokens).where(admin_tokens.c.id == token_id).values(last_used_at=func.now())
    )


async def _mint(
    conn: AsyncConnection,
    *,
    name: str,
    scope: str,
    zone_id: str | None,
    capability: str,
    created_by: str,
    caller: Caller,
) -> AdminTokenCreated:
    token = new_admin_token()
    row = (
        await conn.execute(
            insert(admin_tokens)
            .values(
                id=new_id(),
                name=name,
                token_sha256=token_digest(token),
                scope=scope,
                zone_id=zone_id,
                capability=capability,
                created_by=created_by,
            )
            .returning(*_PUBLIC)
        )
    ).one()
    await record_change(
        conn,
        "admin_token.created",
        entity_type="admin_token",
        entity_id=row.id,
        zone_id=zone_id,
        request_id=caller.request_id,
    )
    listed = msgspec.structs.asdict(token_wire(row))
    del listed["last_used_at"], listed["revoked_at"]  # a new token has neither
    return AdminTokenCreated(**listed, token=token)


async def create_admin_token(
    conn: AsyncConnection, data: AdminTokenCreate, caller: Caller
) -> AdminTokenCreated:
    """A new token; its cleartext is in this answer only."""
    zone_id = data.zone_id if isinstance(data.zone_id, str) else None
    if data.scope == "zone" and zone_id is None:
        raise InvalidInput("zone_id_required", "a zone token needs zone_id")
    if data.scope == "global" and zone_id is not None:
        raise InvalidInput("zone_id_not_allowed_for_global", "a global token has no zone_id")
    if zone_id is not None:
        await require_live_zone(conn, zone_id)
    return await _mint(
        conn,
        name=data.name,
        scope=data.scope,
        zone_id=zone_id,
        capability=data.capability,
        created_by=caller.actor_name,
        caller=caller,
    )


async def list_admin_tokens(conn: AsyncConnection, page: Page) -> Listing[AdminToken]:
    rows = (await conn.execute(*_PAGE.statement(page))).all()
    return listing(rows, page, token_wire)


async def get_admin_token(conn: AsyncConnection, token_id: str) -> AdminToken:
    """One token as the list shows it (there is no GET one: a conditional revocation compares it)."""
    row = (await conn.execute(select(*_PUBLIC).where(admin_tokens.c.id == token_id))).first()
    if row is None:
        raise NotFound("admin_token_not_found", f"admin token {token_id} does not exist or is revoked")
    return token_wire(row)


async def revoke_admin_token(conn: AsyncConnection, token_id: str, caller: Caller) -> None:
    """Revoke at once (every replica looks tokens up per request); a revoked token is not found again."""
    row = (
        await conn.execute(
            select(admin_tokens.c.revoked_at, admin_tokens.c.zone_id)
            .where(admin_tokens.c.id == token_id)
            .with_for_update()
        )
    ).first()
    if row is None or row.revoked_at is not None:
        raise NotFound("admin_token_not_found", f"admin token {token_id} does not exist or is revoked")
    await conn.execute(
        update(admin_tokens).where(admin_tokens.c.id == token_id).values(revoked_at=func.now())
    )
    after_commit(conn, f"token:{token_id}")
    await record_change(
        conn,
        "admin_token.revoked",
        entity_type="admin_token",
        entity_id=token_id,
        zone_id=row.zone_id,
        request_id=caller.request_id,
    )


async def seed_env_token(conn: AsyncConnection, token: str) -> None:
    """Make CARACAL_ADMIN_TOKEN a live global token; idempotent across restarts and replicas.

    Earlier env tokens are revoked. A token an operator revoked stays revoked: it is not revived.
    """
    digest = token_digest(token)
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": BOOTSTRAP_LOCK_KEY})
    known = (
        await conn.execute(
            select(admin_tokens.c.id, admin_tokens.c.revoked_at).where(admin_tokens.c.token_sha256 == digest)
        )
    ).all()
    if not known:
        token_id = new_id()
        await conn.execute(
            insert(admin_tokens).values(
                id=token_id,
                name="bootstrap",
                token_sha256=digest,
                scope="global",
                zone_id=None,
                capability="write",
                created_by=ENV_BOOTSTRAP,
            )
        )
        await record_change(
            conn, "admin_token.created", entity_type="admin_token", entity_id=token_id, zone_id=None
        )
    elif all(row.revoked_at is not None for row in known):
        log.warning("CARACAL_ADMIN_TOKEN was revoked through the API; it stays revoked")
    await conn.execute(
        update(admin_tokens)
        .where(
            admin_tokens.c.created_by == ENV_BOOTSTRAP,
            admin_tokens.c.revoked_at.is_(None),
            admin_tokens.c.token_sha256 != digest,
        )
        .values(revoked_at=func.now())
    )


async def bootstrap_local_token(conn: AsyncConnection, caller: Caller) -> AdminTokenCreated:
    """Mint the first global token, once: afterwards 409 bootstrap_already_done."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": BOOTSTRAP_LOCK_KEY})
    usable = (
        await conn.execute(
            select(admin_tokens.c.id)
            .where(
                admin_tokens.c.scope == "global",
                admin_tokens.c.capability == "write",
                admin_tokens.c.revoked_at.is_(None),
            )
            .limit(1)
        )
    ).first()
    if usable is not None:
        raise Conflict("bootstrap_already_done", "a global admin token already exists")
    return await _mint(
        conn,
        name="local-bootstrap",
        scope="global",
        zone_id=None,
        capability="write",
        created_by=LOCAL_BOOTSTRAP,
        caller=caller,
    )
