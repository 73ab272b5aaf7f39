"""/v1/zones/{zone_id}/applications (CONTRACT.md §4.2), rotate-secret, DCR and RFC 7591 registration."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.params import FromPath, HeaderParameter, JSONBody
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.paging import Page
from caracal.domain import applications
from caracal.domain.applications import (
    INTERNALS_HEADER,
    INTERNALS_VALUE,
    Application,
    ApplicationCreate,
    ApplicationUpdate,
    ApplicationWithSecret,
    new_client_secret,
)
from caracal.domain.context import Caller
from caracal.domain.dcr import (
    RATE_PER_SECOND,
    ClientInformation,
    ClientMetadata,
    DcrRegistration,
    Registration,
    check_client_metadata,
    client_information,
    dcr_rate_key,
    dcr_registration,
    rate_exceeded,
    register_dcr_application,
    registered_application,
    rfc7591_registration,
)
from caracal.domain.traits import trait_error
from caracal.domain.zones import require_live_zone
from caracal.etags import require_unchanged
from caracal_api.openapi import problems
from caracal_api.ratelimit import RequestLimits
from caracal_api.resources import Resources, ResourcesDep, provide_resources
from caracal_api.routes.common import LINK, PAGE, PageDep, caller_of, list_response, zone_before_body
from caracal_api.routes.conditional import ETAG, IfMatch, conditional, tagged

log = logging.getLogger("caracal.api.applications")
BODY = {"body_error": "invalid_application"}
RFC7591_BODY = {"body_error": "invalid_client_metadata"}
Internals = Annotated[
    str | None,
    HeaderParameter(
        name=INTERNALS_HEADER,
        required=False,
        description=f"`{INTERNALS_VALUE}` adds the application's `traits`",
    ),
]


def _shows_traits(internals: str | None) -> bool:
    return internals == INTERNALS_VALUE


async def _over_dcr_rate(limits: RequestLimits, zone_id: str, caller: Caller) -> bool:
    """The contract's one-second window (SET 0 EX 1 NX, INCR) in one round trip; fails open."""
    if caller.actor is None or not limits.breaker.allows():
        return False
    key = dcr_rate_key(zone_id, caller.actor.id)
    try:
        async with limits.redis.pipeline(transaction=False) as pipe:
            pipe.set(key, 0, ex=1, nx=True)
            pipe.incr(key)
            _, count = await pipe.execute()
    except (RedisError, OSError) as exc:
        limits.breaker.failed()
        log.warning("DCR rate limit not counted, Redis unavailable: %r", exc)
        return False
    limits.breaker.succeeded()
    return int(count) > RATE_PER_SECOND


async def _register(
    request: Request[Any, Any, Any],
    res: Resources,
    zone_id: str,
    registration: Registration,
    answer: Callable[[Any], Any],
) -> Response[Any]:
    """Both DCR routes: one transaction (zone lock, switch, cap, insert); `answer` shapes the row."""
    caller = caller_of(request)

    async def register(conn: AsyncConnection) -> Any:
        row = await register_dcr_application(
            conn, zone_id, registration, caller, max_live=res.settings.dcr_max_live_per_zone
        )
        return answer(row)

    return await res.write(request, register)


async def _within_dcr_rate(request: Request[Any, Any, Any], res: Resources, zone_id: str) -> None:
    if await _over_dcr_rate(res.limits, zone_id, caller_of(request)):
        raise rate_exceeded()


class ApplicationController(Controller):
    path = "/v1/zones/{zone_id:str}/applications"
    tags = ["applications"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @get("/", dependencies=PAGE, response_headers=[LINK], summary="List a zone's applications")
    async def list_applications(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        page: PageDep,
        internals: Internals = None,
    ) -> Response[list[Application]]:
        traits = _shows_traits(internals)

        async def fetch(conn: Any, wanted: Page = page) -> Any:
            return await applications.list_applications(conn, zone_id, wanted, traits=traits)

        return list_response(request, page, await res.read(fetch))

    @post(
        "/",
        opt=BODY,
        before_request=zone_before_body,
        responses=problems(403, 404),
        summary="Create a managed application (its client_secret is shown in this answer only)",
    )
    async def create_application(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[ApplicationCreate],
    ) -> Response[ApplicationWithSecret]:
        caller = caller_of(request)
        if (refused := trait_error(data.traits, caller)) is not None:
            # the contract checks the zone before the traits: a missing zone answers 404 first
            await res.read(lambda conn: require_live_zone(conn, zone_id))
            raise refused
        secret = await new_client_secret()  # before the transaction: no connection waits on Argon2id
        return await res.write(
            request, lambda conn: applications.create_application(conn, zone_id, data, secret, caller)
        )

    @get("/{application_id:str}", response_headers=[ETAG], summary="Get an application")
    async def get_application(
        self,
        zone_id: FromPath[str],
        application_id: FromPath[str],
        res: ResourcesDep,
        internals: Internals = None,
    ) -> Response[Application]:
        traits = _shows_traits(internals)
        return tagged(
            await res.read(
                lambda conn: applications.get_application(conn, zone_id, application_id, traits=traits)
            )
        )

    @patch(
        "/{application_id:str}",
        opt=BODY,
        response_headers=[ETAG],
        responses=conditional(403, 404),
        summary="Update an application's name, traits or client secret; answers the application",
    )
    async def update_application(
        self,
        *,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        application_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[ApplicationUpdate],
        internals: Internals = None,
        if_match: IfMatch = None,
    ) -> Response[Application]:
        caller = caller_of(request)
        if isinstance(data.traits, list) and (refused := trait_error(data.traits, caller)) is not None:
            raise refused
        chosen = data.client_secret if isinstance(data.client_secret, str) else None
        secret = await new_client_secret(chosen) if chosen is not None else None
        traits = _shows_traits(internals)
        async with res.writing(request) as conn:
            await require_unchanged(
                conn,
                if_match,
                "application",
                (zone_id, application_id),
                lambda: applications.get_application(conn, zone_id, application_id, traits=traits),
            )
            updated = await applications.update_application(
                conn, zone_id, application_id, data, secret=secret, caller=caller, traits=traits
            )
            return tagged(updated)

    @delete("/{application_id:str}", responses=conditional(), summary="Archive an application")
    async def delete_application(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        application_id: FromPath[str],
        res: ResourcesDep,
        if_match: IfMatch = None,
    ) -> None:
        async with res.writing(request) as conn:
            await require_unchanged(
                conn,
                if_match,
                "application",
                (zone_id, application_id),
                lambda: applications.get_application(conn, zone_id, application_id, traits=False),
            )
            await applications.delete_application(conn, zone_id, application_id, caller_of(request))

    @post(
        "/{application_id:str}/rotate-secret",
        status_code=200,
        responses=problems(404),
        summary="Replace an application's client secret; the new one is shown in this answer only",
    )
    async def rotate_secret(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        application_id: FromPath[str],
        res: ResourcesDep,
    ) -> Response[ApplicationWithSecret]:
        secret = await new_client_secret()
        return await res.write(
            request,
            lambda conn: applications.rotate_secret(
                conn, zone_id, application_id, secret, caller_of(request)
            ),
        )

    @post(
        "/dcr",
        opt=BODY,
        responses=problems(403, 404, 429),
        summary="Register a DCR application that expires (its client_secret is shown in this answer only)",
    )
    async def register_dcr(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[DcrRegistration],
    ) -> Response[ApplicationWithSecret]:
        await _within_dcr_rate(request, res, zone_id)
        registration = dcr_registration(data, await new_client_secret())
        return await _register(
            request, res, zone_id, registration, lambda row: registered_application(row, registration)
        )

    @post(
        "/register",
        opt=RFC7591_BODY,
        responses=problems(403, 404, 429),
        summary="RFC 7591 dynamic client registration (the admin token is the initial access token)",
    )
    async def register_client(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[ClientMetadata],
    ) -> Response[ClientInformation]:
        check_client_metadata(data)
        await _within_dcr_rate(request, res, zone_id)
        secret = await new_client_secret()
        registration = rfc7591_registration(data, secret)
        return await _register(
            request, res, zone_id, registration, lambda row: client_information(row, data, secret)
        )
