"""/v1/zones/{zone_id}/provider-grants (CONTRACT.md §4.8): create, revoke, OAuth authorize and callback."""

from __future__ import annotations

import html
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, head, post
from litestar.di import Provide
from litestar.exceptions import ValidationException
from litestar.params import FromPath, FromQuery, JSONBody, Parameter, QueryParameter

from caracal.domain import oauth, provider_grants
from caracal.domain.oauth import OAuthAuthorization, OAuthAuthorize
from caracal.domain.provider_grants import ProviderGrant, ProviderGrantCreate, ProviderGrantRevoke
from caracal.errors import CaracalError, InvalidInput
from caracal.ids import is_valid_param
from caracal.token_exchange import ExchangeLimits, exchange
from caracal_api.errors import problem
from caracal_api.openapi import problems
from caracal_api.resources import Resources, ResourcesDep, provide_resources
from caracal_api.routes.common import caller_of, zone_before_body

# `state` is a name Litestar reserves for the app state: the parameter is renamed, the query key is not
StateQuery = Annotated[
    str | None,
    QueryParameter(name="state", min_length=32, max_length=256, description="What authorize returned"),
]
ProviderText = Annotated[str, Parameter(description="As the provider sent it")]


def _limits(res: Resources) -> ExchangeLimits:
    settings = res.settings
    return ExchangeLimits(
        timeout_s=settings.oauth_token_timeout_ms / 1000,
        allow_loopback=settings.oauth_allow_loopback_token_hosts,
        ca_file=settings.oauth_token_ca_file,
    )


def _wants_html(request: Request[Any, Any, Any]) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept and "application/json" not in accept


def _page(status: int, title: str, text: str) -> Response[str]:
    title, text = html.escape(title), html.escape(text)
    body = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body><h1>{title}</h1><p>{text}</p></body></html>"
    )
    return Response(body, status_code=status, media_type="text/html; charset=utf-8")


def _invalid_callback(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """A query outside its declared shape (the state's length) is the callback's own 400 code."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    detail = "; ".join(str(item.get("message", "")) for item in extra if isinstance(item, dict)) or str(exc)
    if _wants_html(request):
        return _page(400, "Authorization failed", f"invalid_oauth_callback: {detail}")
    return problem(400, "invalid_oauth_callback", detail)


class ProviderGrantController(Controller):
    path = "/v1/zones/{zone_id:str}/provider-grants"
    tags = ["provider-grants"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @post(
        "/",
        opt={"body_error": "invalid_provider_grant"},
        before_request=zone_before_body,
        responses=problems(403, 404),
        summary="Store a user's provider tokens (overwrites the active grant of the same tuple)",
    )
    async def create_provider_grant(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[ProviderGrantCreate],
    ) -> Response[ProviderGrant]:
        return await res.write(
            request,
            lambda conn: provider_grants.create_provider_grant(
                conn, res.settings.zone_kek, zone_id, data, caller_of(request)
            ),
        )

    @post(
        "/revoke",
        opt={"body_error": "invalid_provider_grant_revoke"},
        status_code=200,
        responses=problems(404),
        summary="Revoke the active grant of a user, resource and provider (its tokens are wiped)",
    )
    async def revoke_provider_grant(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[ProviderGrantRevoke],
    ) -> Response[ProviderGrant]:
        return await res.write(
            request,
            lambda conn: provider_grants.revoke_provider_grant(conn, zone_id, data, caller_of(request)),
        )

    @post(
        "/oauth/authorize",
        opt={"body_error": "invalid_provider_oauth_authorize"},
        before_request=zone_before_body,
        status_code=200,
        responses=problems(403, 404),
        summary="Start the OAuth authorization-code flow: the provider URL to send the user to",
    )
    async def authorize(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[OAuthAuthorize],
    ) -> Response[OAuthAuthorization]:
        pending = await res.read(lambda conn: oauth.prepare_authorization(conn, zone_id, data))
        return await res.answer(request, await oauth.remember_state(res.redis, pending))

    @get(
        "/oauth/callback",
        opt={"public": True},
        exception_handlers={ValidationException: _invalid_callback},
        status_code=201,
        security=[{}],
        responses=problems(403, 404, 502),
        summary="Where the provider sends the user back (no token): exchanges the code, stores the grant",
    )
    async def callback(
        self,
        *,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        oauth_state: StateQuery = None,
        code: FromQuery[ProviderText | None] = None,
        error: FromQuery[ProviderText | None] = None,
        error_description: FromQuery[ProviderText | None] = None,
    ) -> Response[Any]:
        query = {"state": oauth_state, "code": code, "error": error, "error_description": error_description}
        try:
            grant = await _complete(request, res, zone_id, query)
        except CaracalError as exc:
            if not _wants_html(request):
                raise
            return _page(exc.status, "Authorization failed", f"{exc.code}: {exc.detail or ''}")
        if _wants_html(request):
            return _page(201, "Authorization complete", "You can close this window.")
        return Response(grant, status_code=201)

    @head(
        "/oauth/callback",
        opt={"public": True},
        security=[{}],
        include_in_schema=False,
        summary="The callback is here (answers without spending a state: link checkers do send HEAD)",
    )
    async def callback_head(self, zone_id: FromPath[str]) -> None:
        if not is_valid_param(zone_id):
            raise InvalidInput("invalid_params", "malformed path parameter")


async def _complete(
    request: Request[Any, Any, Any], res: Resources, zone_id: str, query: dict[str, str | None]
) -> ProviderGrant:
    """Spend the state, exchange the code (no database connection held meanwhile), upsert the grant."""
    if not is_valid_param(zone_id):  # the guard checks path parameters, and a public route skips it
        raise InvalidInput("invalid_params", "malformed path parameter")
    callback = oauth.parse_callback(query)
    record = await oauth.consume_state(res.redis, zone_id, callback)
    code = oauth.authorization_code(callback)
    zone_kek = res.settings.zone_kek
    token_request = await res.read(
        lambda conn: oauth.token_request_for(conn, zone_kek, zone_id, record, code)
    )
    tokens = oauth.grant_tokens(await exchange(token_request, _limits(res)))
    async with res.writing(request) as conn:
        return await provider_grants.upsert_provider_grant(
            conn, zone_kek, zone_id, record.target, tokens, caller=caller_of(request)
        )
