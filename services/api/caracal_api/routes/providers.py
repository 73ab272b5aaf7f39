"""/v1/zones/{zone_id}/providers (CONTRACT.md §4.4): lenient bodies, secrets sealed, never returned."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from caracal.domain import provider_changes, providers
from caracal.domain.provider_changes import ProviderCreate, ProviderUpdate
from caracal.domain.providers import Provider
from caracal.etags import require_unchanged
from caracal_api.openapi import problems
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import LINK, PAGE, PageDep, caller_of, listed, zone_before_body
from caracal_api.routes.conditional import ETAG, IfMatch, conditional, tagged

BODY = {"body_error": "invalid_provider"}


class ProviderController(Controller):
    path = "/v1/zones/{zone_id:str}/providers"
    tags = ["providers"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @get(
        "/",
        dependencies=PAGE,
        response_headers=[LINK],
        summary="List a zone's providers (newest first; Link header for the next page)",
    )
    async def list_providers(
        self, request: Request[Any, Any, Any], zone_id: FromPath[str], res: ResourcesDep, page: PageDep
    ) -> Response[list[Provider]]:
        return await listed(
            request, res.engine, page, lambda conn, page: providers.list_providers(conn, zone_id, page)
        )

    @post(
        "/",
        opt=BODY,
        before_request=zone_before_body,
        responses=problems(404, 409),
        summary="Create a provider; secrets in config_json are sealed under ZONE_KEK (503 without it)",
    )
    async def create_provider(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[ProviderCreate],
    ) -> Response[Provider]:
        return await res.write(
            request,
            lambda conn: provider_changes.create_provider(
                conn, zone_id, data, caller_of(request), zone_kek=res.settings.zone_kek
            ),
        )

    @get(
        "/{provider_id:str}",
        response_headers=[ETAG],
        summary="Get a provider (secret_config_keys only, never secrets)",
    )
    async def get_provider(
        self, zone_id: FromPath[str], provider_id: FromPath[str], res: ResourcesDep
    ) -> Response[Provider]:
        return tagged(await res.read(lambda conn: providers.get_provider(conn, zone_id, provider_id)))

    @patch(
        "/{provider_id:str}",
        opt=BODY,
        response_headers=[ETAG],
        responses=conditional(409),
        summary="Update a provider; config_json replaces the public config, secrets sent replace all",
    )
    async def update_provider(
        self,
        *,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        provider_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[ProviderUpdate],
        if_match: IfMatch = None,
    ) -> Response[Provider]:
        async with res.writing(request) as conn:
            await require_unchanged(
                conn,
                if_match,
                "provider",
                (zone_id, provider_id),
                lambda: providers.get_provider(conn, zone_id, provider_id),
            )
            updated = await provider_changes.update_provider(
                conn, zone_id, provider_id, data, caller_of(request), zone_kek=res.settings.zone_kek
            )
            return tagged(updated)

    @delete(
        "/{provider_id:str}",
        responses=conditional(),
        summary="Archive a provider (resources naming it are untouched)",
    )
    async def delete_provider(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        provider_id: FromPath[str],
        res: ResourcesDep,
        if_match: IfMatch = None,
    ) -> None:
        async with res.writing(request) as conn:
            await require_unchanged(
                conn,
                if_match,
                "provider",
                (zone_id, provider_id),
                lambda: providers.get_provider(conn, zone_id, provider_id),
            )
            await providers.delete_provider(conn, zone_id, provider_id, caller_of(request))
