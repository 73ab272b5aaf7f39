"""Applications (OAuth clients of a zone): managed ones, their secrets, traits, soft delete, events.

A client secret is hashed before the write transaction opens (caracal.passwords: ~0.1 s of CPU
off the event loop), so no connection is held while Argon2id runs.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy import Interval, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Text as SqlText

from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables.applications import applications
from caracal.db.tables.zones import zones
from caracal.domain.changes import entity_changed
from caracal.domain.context import Caller
from caracal.domain.wire import Body, Name, Resource, Timestamp
from caracal.errors import InvalidInput, NotFound
from caracal.ids import new_id
from caracal.passwords import hash_client_secret
from caracal.timefmt import iso_ms

SECRET_PREFIX = "cs_"
SECRET_BYTES = 32
# The request header that adds `traits` to the two GETs (CONTRACT.md §4.2).
INTERNALS_HEADER = "x-caracal-application-internals"
INTERNALS_VALUE = "control"

# a caller-chosen secret is only hashed, never stored: any non-empty string will do
SecretText = Annotated[str, msgspec.Meta(min_length=1)]


class ApplicationCreate(Body):
    name: Name
    registration_method: Literal["managed"]
    traits: list[str] = msgspec.field(default_factory=list)


class ApplicationUpdate(Body):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    client_secret: SecretText | msgspec.UnsetType = msgspec.UNSET
    traits: list[str] | msgspec.UnsetType = msgspec.UNSET


class Application(Resource):
    """An application as read: `traits` only for callers that send the internals header."""

    id: str
    zone_id: str
    name: str
    registration_method: Literal["managed", "dcr"]
    expires_at: Timestamp | None
    created_at: Timestamp
    traits: list[str] | msgspec.UnsetType = msgspec.UNSET


class ApplicationWithSecret(Resource):
    """The answer to a creation or a rotation: the only time the client secret is shown."""

    id: str
    zone_id: str
    name: str
    registration_method: Literal["managed", "dcr"]
    expires_at: Timestamp | None
    created_at: Timestamp
    client_secret: str


@dataclass(frozen=True, slots=True)
class ClientSecret:
    """A new secret: the cleartext for the one answer that shows it, and what the table stores."""

    cleartext: str
    stored: str

    def __repr__(self) -> str:  # never in a log line or a traceback's locals
        return "ClientSecret(<redacted>)"


_COLUMNS = (
    applications.c.id,
    applications.c.zone_id,
    applications.c.name,
    applications.c.registration_method,
    applications.c.expires_at,
    applications.c.created_at,
    applications.c.traits,
)
_IN_ZONE = (applications.c.zone_id == bindparam("zone"), applications.c.archived_at.is_(None))
_THIS = (*_IN_ZONE, applications.c.id == bindparam("app"))
_UNEXPIRED = or_(applications.c.expires_at.is_(None), applications.c.expires_at > func.now())
_LIVE = select(*_COLUMNS).where(*_THIS)
_GET = Query(_LIVE)
_GET_UNEXPIRED = Query(_LIVE.where(_UNEXPIRED))
_PAGE = PagedQuery(select(*_COLUMNS).where(*_IN_ZONE), applications.c.created_at, applications.c.id)
_SECRET_STATE = select(applications.c.client_secret_hash).where(*_THIS).with_for_update()
# the zone check and the insert in one statement: no row back means no live zone
_INSERT = (
    insert(applications)
    .from_select(
        ["id", "zone_id", "name", "registration_method", "client_secret_hash", "traits", "expires_at"],
        select(
            bindparam("id", type_=SqlText),
            zones.c.id,
            bindparam("name", type_=SqlText),
            bindparam("registration_method", type_=SqlText),
            bindparam("client_secret_hash", type_=SqlText),
            bindparam("traits", type_=ARRAY(SqlText)),
            func.now() + bindparam("ttl", type_=Interval),
        ).where(zones.c.id == bindparam("zone_id"), zones.c.archived_at.is_(None)),
    )
    .returning(*_COLUMNS)
)
_ARCHIVE = update(applications).where(*_THIS).values(archived_at=func.now()).returning(applications.c.id)


def application_wire(row: Any, *, traits: bool = False) -> Application:
    return Application(
        id=row.id,
        zone_id=row.zone_id,
        name=row.name,
        registration_method=row.registration_method,
        expires_at=iso_ms(row.expires_at),
        created_at=iso_ms(row.created_at),
        traits=list(row.traits) if traits else msgspec.UNSET,
    )


def with_secret(row: Any, secret: ClientSecret) -> ApplicationWithSecret:
    shown = msgspec.structs.asdict(application_wire(row))
    del shown["traits"]
    return ApplicationWithSecret(**shown, client_secret=secret.cleartext)


def application_not_found(application_id: str) -> NotFound:
    return NotFound("application_not_found", f"application {application_id} does not exist")


async def new_client_secret(cleartext: str | None = None) -> ClientSecret:
    """`cs_` + base64url(32 random bytes) (46 characters) unless the caller chose one; hashed off the loop."""
    if cleartext is None:
        cleartext = SECRET_PREFIX + base64.urlsafe_b64encode(os.urandom(SECRET_BYTES)).decode().rstrip("=")
    return ClientSecret(cleartext, await hash_client_secret(cleartext))


async def require_live_application(
    conn: AsyncConnection, zone_id: str, application_id: str, *, unexpired: bool = True
) -> Any:
    """The application row (id, name, registration_method, expires_at, ...) for another aggregate's
    rule: 404 application_not_found when it is missing, archived or (unless told) expired."""
    query = _GET_UNEXPIRED if unexpired else _GET
    row = await query.first(conn, {"zone": zone_id, "app": application_id})
    if row is None:
        raise application_not_found(application_id)
    return row


async def list_applications(
    conn: AsyncConnection, zone_id: str, page: Page, *, traits: bool
) -> Listing[Application]:
    """Every application not archived, expired DCR ones included until the collector archives them."""
    rows = await _PAGE.rows(conn, page, zone=zone_id)
    return listing(rows, page, lambda row: application_wire(row, traits=traits))


async def get_application(
    conn: AsyncConnection, zone_id: str, application_id: str, *, traits: bool
) -> Application:
    row = await require_live_application(conn, zone_id, application_id, unexpired=False)
    return application_wire(row, traits=traits)


async def insert_application(
    conn: AsyncConnection,
    zone_id: str,
    *,
    name: str,
    method: Literal["managed", "dcr"],
    secret: ClientSecret,
    traits: list[str],
    ttl: timedelta | None,
    application_id: str | None = None,
) -> Any:
    """The new row; 404 zone_not_found when the zone is missing or archived."""
    values = {
        "id": application_id or new_id(),
        "zone_id": zone_id,
        "name": name,
        "registration_method": method,
        "client_secret_hash": secret.stored,
        "traits": traits,
        "ttl": ttl,
    }
    row = (await conn.execute(_INSERT, values)).first()
    if row is None:
        raise NotFound("zone_not_found", f"zone {zone_id} does not exist")
    return row


async def create_application(
    conn: AsyncConnection, zone_id: str, data: ApplicationCreate, secret: ClientSecret, caller: Caller
) -> ApplicationWithSecret:
    """A managed application; its secret is in this answer only. Traits were checked by the caller."""
    row = await insert_application(
        conn, zone_id, name=data.name, method="managed", secret=secret, traits=data.traits, ttl=None
    )
    await entity_changed(conn, "application.created", zone_id, row.id, caller)
    return with_secret(row, secret)


async def _require_secret_configured(conn: AsyncConnection, zone_id: str, application_id: str) -> None:
    row = (await conn.execute(_SECRET_STATE, {"zone": zone_id, "app": application_id})).first()
    if row is None:
        raise application_not_found(application_id)
    if row.client_secret_hash is None:
        raise InvalidInput("client_secret_not_configured", "the application has no client secret to replace")


async def update_application(
    conn: AsyncConnection,
    zone_id: str,
    application_id: str,
    data: ApplicationUpdate,
    *,
    secret: ClientSecret | None,
    caller: Caller,
    traits: bool = False,
) -> Application:
    """Name, traits (replaced) and a caller-chosen secret (`secret`, already hashed): the full object."""
    changes: dict[str, Any] = {}
    if secret is not None:
        await _require_secret_configured(conn, zone_id, application_id)
        changes["client_secret_hash"] = secret.stored
    if isinstance(data.name, str):
        changes["name"] = data.name
    if isinstance(data.traits, list):
        changes["traits"] = data.traits
    if not changes:
        raise InvalidInput("no_fields", "nothing to update")
    statement = update(applications).where(*_THIS).values(**changes).returning(*_COLUMNS)
    row = (await conn.execute(statement, {"zone": zone_id, "app": application_id})).first()
    if row is None:
        raise application_not_found(application_id)
    await entity_changed(conn, "application.updated", zone_id, application_id, caller)
    return application_wire(row, traits=traits)


async def rotate_secret(
    conn: AsyncConnection, zone_id: str, application_id: str, secret: ClientSecret, caller: Caller
) -> ApplicationWithSecret:
    """A new secret replaces the old one (which stops verifying at commit); shown in this answer only.

    An application without a secret (none the API creates) keeps having none: 400
    client_secret_not_configured, as PATCH answers, since a rotation replaces a credential.
    """
    await _require_secret_configured(conn, zone_id, application_id)
    statement = (
        update(applications).where(*_THIS).values(client_secret_hash=secret.stored).returning(*_COLUMNS)
    )
    row = (await conn.execute(statement, {"zone": zone_id, "app": application_id})).one()
    await entity_changed(conn, "application.secret_rotated", zone_id, application_id, caller)
    return with_secret(row, secret)


async def delete_application(
    conn: AsyncConnection, zone_id: str, application_id: str, caller: Caller
) -> None:
    """Archive: invisible to every read and write after this (CONTRACT.md §0, soft delete)."""
    found = (await conn.execute(_ARCHIVE, {"zone": zone_id, "app": application_id})).first()
    if found is None:
        raise application_not_found(application_id)
    await entity_changed(conn, "application.deleted", zone_id, application_id, caller)
