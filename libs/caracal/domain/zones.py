"""Zones (tenants): slugs, their wrapped data-encryption key, DCR switch, soft delete, events."""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated, Any, Literal, NoReturn

import msgspec
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.crypto import new_wrapped_dek
from caracal.db.engine import UNIQUE_VIOLATIONS, after_commit, unique_violation_constraint
from caracal.db.locks import ZONE_SLUG_PREFIX
from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables.zones import ZONES_SLUG_KEY, zones
from caracal.domain.audit import audited, audited_params
from caracal.domain.changes import change_rows, entity_changed
from caracal.domain.context import Caller
from caracal.domain.dcr_shutdown import live_dcr_applications, shut_down_dcr
from caracal.domain.wire import Body, Name, Resource, Timestamp
from caracal.errors import Conflict, InvalidInput, NotFound
from caracal.ids import new_id
from caracal.settings import KeyRing
from caracal.timefmt import iso_ms

# The contract sets no length limit, but a unique btree entry cannot exceed ~2700 bytes.
SLUG_MAX = 2000
Slug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9-]+$", max_length=SLUG_MAX)]
_NON_SLUG = re.compile(r"[^a-z0-9]+")


class ZoneCreate(Body):
    name: Name
    slug: Slug | msgspec.UnsetType = msgspec.UNSET
    dcr_enabled: bool = False


class ZoneUpdate(Body):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    slug: Slug | msgspec.UnsetType = msgspec.UNSET
    dcr_enabled: bool | msgspec.UnsetType = msgspec.UNSET
    dcr_shutdown: Literal["keep_live", "revoke_live"] | msgspec.UnsetType = msgspec.UNSET


_COLUMNS = (
    zones.c.id,
    zones.c.name,
    zones.c.slug,
    zones.c.dcr_enabled,
    zones.c.created_at,
    zones.c.updated_at,
)


_LIVE = select(*_COLUMNS).where(zones.c.id == bindparam("zone_id"), zones.c.archived_at.is_(None))
_LIVE_FOR_UPDATE = _LIVE.with_for_update()
_GET = Query(_LIVE)
_PAGE = PagedQuery(select(*_COLUMNS).where(zones.c.archived_at.is_(None)), zones.c.created_at, zones.c.id)
_TAKEN_SLUGS = select(zones.c.slug).where(
    (zones.c.slug == bindparam("base")) | zones.c.slug.startswith(bindparam("base_prefix"))
)
# a generated slug that another creator took meanwhile returns no row (no savepoint needed)
_INSERT = pg_insert(zones).on_conflict_do_nothing(constraint=ZONES_SLUG_KEY).returning(*_COLUMNS)
# the same insert with the request's audit row and event in its statement (create_zone_at_once)
_CREATE_AUDITED = audited(
    pg_insert(zones)
    .values(
        {name: bindparam(name) for name in ("id", "name", "slug", "dcr_enabled", "dek_ciphertext", "kek_arn")}
    )
    .on_conflict_do_nothing(constraint=ZONES_SLUG_KEY)
    .returning(*_COLUMNS)
)
_ARCHIVE = (
    update(zones)
    .where(zones.c.id == bindparam("zone_id"), zones.c.archived_at.is_(None))
    .values(archived_at=func.now(), updated_at=func.now())
    .returning(zones.c.id)
)
_SLUG_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:key))")


class Zone(Resource):
    id: str
    name: str
    slug: str
    dcr_enabled: bool
    created_at: Timestamp
    updated_at: Timestamp


class ZoneDcrStatus(Resource):
    id: str
    dcr_enabled: bool
    live_dcr_applications: int


def zone_wire(row: Any) -> Zone:
    return Zone(
        id=row.id,
        name=row.name,
        slug=row.slug,
        dcr_enabled=row.dcr_enabled,
        created_at=iso_ms(row.created_at),
        updated_at=iso_ms(row.updated_at),
    )


def slugify(name: str, fallback: str) -> str:
    """Room is left for the `-<uuidv7 hex>` suffix within SLUG_MAX."""
    return _NON_SLUG.sub("-", name.lower()).strip("-")[: SLUG_MAX - 40].rstrip("-") or fallback


def first_free(base: str, taken: set[str]) -> str:
    """`base`, then `base-2` … `base-999`, then `base-<uuidv7 hex>`."""
    for candidate in (base, *(f"{base}-{n}" for n in range(2, 1000))):
        if candidate not in taken:
            return candidate
    return f"{base}-{new_id().replace('-', '')}"


async def list_zones(conn: AsyncConnection, page: Page) -> Listing[Zone]:
    return listing(await _PAGE.rows(conn, page), page, zone_wire)


async def get_zone(conn: AsyncConnection, zone_id: str) -> Zone:
    row = await _GET.first(conn, {"zone_id": zone_id})
    if row is None:
        raise NotFound("zone_not_found", f"zone {zone_id} does not exist")
    return zone_wire(row)


async def require_live_zone(conn: AsyncConnection, zone_id: str, *, lock: bool = False) -> Any:
    """The zone row, for create handlers: 404 zone_not_found when missing or archived."""
    row = (await conn.execute(_LIVE_FOR_UPDATE if lock else _LIVE, {"zone_id": zone_id})).first()
    if row is None:
        raise NotFound("zone_not_found", f"zone {zone_id} does not exist")
    return row


async def dcr_status(conn: AsyncConnection, zone_id: str) -> ZoneDcrStatus:
    zone = await get_zone(conn, zone_id)
    live = await live_dcr_applications(conn, zone_id)
    return ZoneDcrStatus(id=zone.id, dcr_enabled=zone.dcr_enabled, live_dcr_applications=live)


async def _taken_slugs(conn: AsyncConnection, base: str) -> set[str]:
    found = await conn.execute(_TAKEN_SLUGS, {"base": base, "base_prefix": f"{base}-"})
    return set(found.scalars().all())


async def create_zone_at_once(
    conn: AsyncConnection, kek: KeyRing, data: ZoneCreate, caller: Caller, audit: dict[str, Any]
) -> Zone | None:
    """create_zone as one statement in autocommit (`conn` holds no transaction), its audit row and
    event included: one round trip. None when the name's slug is taken: create_zone(under_lock=True)
    then finds a free one under the lock. A given slug that is taken is 409 with nothing written."""
    values = _new_zone(kek, data)
    slug = data.slug if isinstance(data.slug, str) else slugify(data.name, "zone")
    events = change_rows("zone.created", values["id"], values["id"], caller)
    row = await _CREATE_AUDITED.first(conn, audited_params({"slug": slug, **values}, audit, events))
    if row is None and isinstance(data.slug, str):
        raise _slug_taken(data.slug)
    return None if row is None else zone_wire(row)


async def create_zone(
    conn: AsyncConnection, kek: KeyRing, data: ZoneCreate, caller: Caller, *, under_lock: bool = False
) -> Zone:
    """In the caller's transaction. A generated slug: the name's own slug is tried first, without
    the lock, unless `under_lock` (it was just found taken)."""
    values = _new_zone(kek, data)
    if isinstance(data.slug, str):
        row = (await conn.execute(_INSERT, {"slug": data.slug, **values})).first()
        if row is None:
            raise _slug_taken(data.slug)
    else:
        row = await _insert_with_free_slug(conn, slugify(data.name, "zone"), values, under_lock=under_lock)
    await entity_changed(conn, "zone.created", values["id"], values["id"], caller)
    return zone_wire(row)


def _new_zone(kek: KeyRing, data: ZoneCreate) -> dict[str, Any]:
    """A new zone's columns but its slug: a fresh id and data-encryption key, wrapped."""
    zone_id = new_id()
    dek, key_id = new_wrapped_dek(kek, zone_id)
    return {
        "id": zone_id,
        "name": data.name,
        "dcr_enabled": data.dcr_enabled,
        "dek_ciphertext": dek,
        "kek_arn": key_id,
    }


def _slug_taken(slug: str) -> Conflict:
    return Conflict("zone_slug_conflict", f"slug {slug!r} is taken")


async def _insert_with_free_slug(
    conn: AsyncConnection, base: str, values: dict[str, Any], *, under_lock: bool
) -> Any:
    # the base itself first, without the lock: most names are new, and this is the slug the locked
    # path would choose for them anyway (two round trips fewer for such a create)
    if (
        not under_lock
        and (row := (await conn.execute(_INSERT, {"slug": base, **values})).first()) is not None
    ):
        return row
    # creators of one base slug take turns (until commit), so none exhausts its attempts
    await conn.execute(_SLUG_LOCK, {"key": ZONE_SLUG_PREFIX + base})
    for _attempt in range(3):
        slug = first_free(base, await _taken_slugs(conn, base))
        row = (await conn.execute(_INSERT, {"slug": slug, **values})).first()
        if row is not None:
            return row
    raise Conflict("zone_slug_conflict", "could not find a free slug; give one")


def _slug_conflict(exc: Exception, slug: str) -> NoReturn:
    """For the `except` of a unique violation: 409 when the slugs' key was violated, else the
    violation itself, raised again."""
    if unique_violation_constraint(exc) == ZONES_SLUG_KEY:
        raise _slug_taken(slug) from exc
    raise exc


def _changes(data: ZoneUpdate) -> dict[str, Any]:
    """The columns a PATCH sets; 400 for a body that sets none or asks for a shutdown it cannot."""
    if data.dcr_shutdown is not msgspec.UNSET and data.dcr_enabled is not False:
        raise InvalidInput("dcr_shutdown_not_applicable", "dcr_shutdown needs dcr_enabled: false")
    changes = {
        name: getattr(data, name)
        for name in ("name", "slug", "dcr_enabled")
        if getattr(data, name) is not msgspec.UNSET
    }
    if not changes:
        raise InvalidInput("no_fields", "nothing to update")
    return changes


def updates_at_once(data: ZoneUpdate) -> bool:
    """Whether update_zone_at_once can do this PATCH: not when it turns DCR off, which first shuts
    down the zone's DCR clients according to the zone's current state (update_zone does)."""
    return data.dcr_enabled is not False


@cache
def _update_audited(columns: frozenset[str]) -> Query:
    """The UPDATE of a live zone setting `columns`, with its audit row and event: built once per set."""
    return audited(
        update(zones)
        .where(zones.c.id == bindparam("zone_id"), zones.c.archived_at.is_(None))
        .values({**{name: bindparam(name) for name in sorted(columns)}, "updated_at": func.now()})
        .returning(*_COLUMNS)
    )


async def update_zone_at_once(
    conn: AsyncConnection, zone_id: str, data: ZoneUpdate, caller: Caller, audit: dict[str, Any]
) -> Zone:
    """update_zone as one statement in autocommit, its audit row and event included (only when
    `updates_at_once(data)`): 404 when the zone is missing or archived, 409 for a taken slug, and
    then nothing is written."""
    changes = _changes(data)
    events = change_rows("zone.updated", zone_id, zone_id, caller)
    params = audited_params({"zone_id": zone_id, **changes}, audit, events)
    try:
        row = await _update_audited(frozenset(changes)).first(conn, params)
    except UNIQUE_VIOLATIONS as exc:
        _slug_conflict(exc, str(changes.get("slug")))
    if row is None:
        raise NotFound("zone_not_found", f"zone {zone_id} does not exist")
    return zone_wire(row)


async def update_zone(conn: AsyncConnection, zone_id: str, data: ZoneUpdate, caller: Caller) -> Zone:
    changes = _changes(data)
    shutdown = data.dcr_shutdown if isinstance(data.dcr_shutdown, str) else None
    zone = await require_live_zone(conn, zone_id, lock=True)
    if data.dcr_enabled is False and (zone.dcr_enabled or shutdown is not None):
        await shut_down_dcr(conn, zone_id, shutdown, caller)
    try:  # a taken slug fails the statement and so the transaction: no savepoint to keep
        row = (
            await conn.execute(
                update(zones)
                .where(zones.c.id == zone_id)
                .values(**changes, updated_at=func.now())
                .returning(*_COLUMNS)
            )
        ).one()
    except IntegrityError as exc:
        _slug_conflict(exc, str(changes.get("slug")))
    await entity_changed(conn, "zone.updated", zone_id, zone_id, caller)
    return zone_wire(row)


_ARCHIVE_AUDITED = audited(_ARCHIVE)


async def delete_zone_at_once(
    conn: AsyncConnection, zone_id: str, caller: Caller, audit: dict[str, Any]
) -> str:
    """delete_zone as one statement in autocommit, its audit row and event included: 404 with
    nothing written when the zone is missing or archived already."""
    events = change_rows("zone.deleted", zone_id, zone_id, caller)
    if await _ARCHIVE_AUDITED.first(conn, audited_params({"zone_id": zone_id}, audit, events)) is None:
        raise NotFound("zone_not_found", f"zone {zone_id} does not exist")
    after_commit(conn, f"zone:{zone_id}")  # its zone-scoped tokens stop working everywhere
    return zone_id


async def delete_zone(conn: AsyncConnection, zone_id: str, caller: Caller) -> None:
    result = await conn.execute(_ARCHIVE, {"zone_id": zone_id})
    if result.first() is None:
        raise NotFound("zone_not_found", f"zone {zone_id} does not exist")
    after_commit(conn, f"zone:{zone_id}")  # its zone-scoped tokens stop working everywhere
    await entity_changed(conn, "zone.deleted", zone_id, zone_id, caller)
