"""Dynamic client registration: the contract's DCR route and RFC 7591 registration, one rule set.

Both register through `register_dcr_application`: the zone row locked (404, 403 dcr_disabled), the
live cap counted under that lock (429 dcr_limit_exceeded), so parallel registrations cannot pass it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.domain.applications import (
    ApplicationWithSecret,
    ClientSecret,
    insert_application,
    with_secret,
)
from caracal.domain.changes import entity_changed
from caracal.domain.context import Caller
from caracal.domain.dcr_shutdown import live_dcr_applications
from caracal.domain.wire import Body, LenientBody, Name, Resource, Text
from caracal.domain.zones import require_live_zone
from caracal.errors import Forbidden, InvalidInput, RateLimited
from caracal.ids import new_id

MAX_EXPIRES_IN = 3600
# the contract's per zone and token limit: more than this many registrations in one second is 429
RATE_PER_SECOND = 10
# what a client holding our secret may use at the token endpoint (RFC 7591 §2)
SECRET_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class DcrRegistration(Body):
    name: Name
    expires_in: Annotated[int, msgspec.Meta(ge=1, le=MAX_EXPIRES_IN)] = MAX_EXPIRES_IN


class ClientMetadata(LenientBody):
    """RFC 7591 §2 client metadata: the members we take; any other member is ignored, as §2 says."""

    client_name: Name | msgspec.UnsetType = msgspec.UNSET
    redirect_uris: list[Text] | msgspec.UnsetType = msgspec.UNSET
    grant_types: list[Text] | msgspec.UnsetType = msgspec.UNSET
    response_types: list[Text] | msgspec.UnsetType = msgspec.UNSET
    token_endpoint_auth_method: Text = SECRET_AUTH_METHODS[0]
    scope: Text | msgspec.UnsetType = msgspec.UNSET
    contacts: list[Text] | msgspec.UnsetType = msgspec.UNSET
    client_uri: Text | msgspec.UnsetType = msgspec.UNSET
    logo_uri: Text | msgspec.UnsetType = msgspec.UNSET
    tos_uri: Text | msgspec.UnsetType = msgspec.UNSET
    policy_uri: Text | msgspec.UnsetType = msgspec.UNSET
    software_id: Text | msgspec.UnsetType = msgspec.UNSET
    software_version: Text | msgspec.UnsetType = msgspec.UNSET


class ClientInformation(Resource):
    """RFC 7591 §3.2.1: the credentials (times in epoch seconds) and the metadata as registered."""

    client_id: str
    client_secret: str
    client_id_issued_at: int
    client_secret_expires_at: int
    client_name: str
    token_endpoint_auth_method: str
    redirect_uris: list[str] | msgspec.UnsetType = msgspec.UNSET
    grant_types: list[str] | msgspec.UnsetType = msgspec.UNSET
    response_types: list[str] | msgspec.UnsetType = msgspec.UNSET
    scope: str | msgspec.UnsetType = msgspec.UNSET
    contacts: list[str] | msgspec.UnsetType = msgspec.UNSET
    client_uri: str | msgspec.UnsetType = msgspec.UNSET
    logo_uri: str | msgspec.UnsetType = msgspec.UNSET
    tos_uri: str | msgspec.UnsetType = msgspec.UNSET
    policy_uri: str | msgspec.UnsetType = msgspec.UNSET
    software_id: str | msgspec.UnsetType = msgspec.UNSET
    software_version: str | msgspec.UnsetType = msgspec.UNSET


@dataclass(frozen=True, slots=True)
class Registration:
    """What to register: the name, how long the client lives, its (already hashed) secret."""

    name: str
    expires_in: int
    secret: ClientSecret
    application_id: str


def dcr_rate_key(zone_id: str, token_id: str) -> str:
    """The contract's Redis key of the one-second window (CONTRACT.md §7.1)."""
    return f"rl:dcr:{zone_id}:{token_id}"


def rate_exceeded() -> RateLimited:
    return RateLimited(
        "dcr_rate_limit_exceeded", f"more than {RATE_PER_SECOND} registrations a second", retry_after_s=1
    )


async def register_dcr_application(
    conn: AsyncConnection, zone_id: str, registration: Registration, caller: Caller, *, max_live: int
) -> Any:
    """A DCR application expiring in `expires_in` seconds; its row. One transaction, zone row locked."""
    zone = await require_live_zone(conn, zone_id, lock=True)
    if not zone.dcr_enabled:
        raise Forbidden("dcr_disabled", "dynamic client registration is disabled in this zone")
    if await live_dcr_applications(conn, zone_id) >= max_live:
        raise RateLimited("dcr_limit_exceeded", f"the zone holds {max_live} live DCR applications")
    row = await insert_application(
        conn,
        zone_id,
        name=registration.name,
        method="dcr",
        secret=registration.secret,
        traits=[],
        ttl=timedelta(seconds=registration.expires_in),
        application_id=registration.application_id,
    )
    await entity_changed(conn, "application.registered", zone_id, row.id, caller)
    return row


def dcr_registration(data: DcrRegistration, secret: ClientSecret) -> Registration:
    return Registration(name=data.name, expires_in=data.expires_in, secret=secret, application_id=new_id())


def registered_application(row: Any, registration: Registration) -> ApplicationWithSecret:
    """The contract's DCR answer: the Application shape plus client_secret (not an RFC 7591 document)."""
    return with_secret(row, registration.secret)


def check_client_metadata(metadata: ClientMetadata) -> None:
    """The rules RFC 7591 names codes for: redirect URIs absolute, an auth method we can honour."""
    for uri in metadata.redirect_uris if isinstance(metadata.redirect_uris, list) else []:
        parts = urlsplit(uri)
        if not parts.scheme or not (parts.netloc or parts.path) or parts.fragment:
            raise InvalidInput(
                "invalid_redirect_uri", f"redirect URI {uri!r} must be absolute, without fragment"
            )
    if metadata.token_endpoint_auth_method not in SECRET_AUTH_METHODS:
        methods = ", ".join(SECRET_AUTH_METHODS)
        detail = f"token_endpoint_auth_method must be one of {methods}: a client secret is issued"
        raise InvalidInput("invalid_client_metadata", detail)


def rfc7591_registration(metadata: ClientMetadata, secret: ClientSecret) -> Registration:
    """Without client_name, the client is named by its id; it lives as long as a DCR client may."""
    application_id = new_id()
    name = metadata.client_name if isinstance(metadata.client_name, str) else application_id
    return Registration(name=name, expires_in=MAX_EXPIRES_IN, secret=secret, application_id=application_id)


def client_information(row: Any, metadata: ClientMetadata, secret: ClientSecret) -> ClientInformation:
    echoed = {k: v for k, v in msgspec.structs.asdict(metadata).items() if v is not msgspec.UNSET}
    echoed.pop("client_name", None)
    return ClientInformation(
        client_id=row.id,
        client_secret=secret.cleartext,
        client_id_issued_at=int(row.created_at.timestamp()),
        client_secret_expires_at=int(row.expires_at.timestamp()),
        client_name=row.name,
        **echoed,
    )
