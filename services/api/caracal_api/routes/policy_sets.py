"""/v1/zones/{zone_id}/policy-sets (CONTRACT.md §4.6), their signed bundles and the bundle key."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import Provide
from litestar.exceptions import ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, Parameter

from caracal.db.paging import Page
from caracal.domain import (
    policy_set_activation,
    policy_set_bundles,
    policy_set_simulation,
    policy_set_status,
    policy_set_versions,
    policy_sets,
)
from caracal.domain.policy_set_activation import Activation, ActivationAccepted, activation_etag
from caracal.domain.policy_set_bundles import BundlePublicKey, PolicyBundle
from caracal.domain.policy_set_simulation import Simulation, SimulationRequest
from caracal.domain.policy_set_status import ActivationStatus
from caracal.domain.policy_set_versions import (
    PolicySetVersion,
    PolicySetVersionCreate,
    PolicySetVersionCreated,
    PolicySetVersionDetail,
)
from caracal.domain.policy_sets import PolicySet, PolicySetCreate
from caracal.etags import if_none_match_holds, require_unchanged
from caracal_api.openapi import problems
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import LINK, PAGE, PageDep, caller_of, listed, zone_before_body
from caracal_api.routes.conditional import ETAG, IfMatch, conditional, tagged

BODY = {"body_error": "invalid_body"}
RESOURCES = {"res": Provide(provide_resources, sync_to_thread=False)}
QUERY_MAX = 512
VERSION_ETAG = ResponseHeader(
    name="etag",
    description='The set\'s active version (`"none"` when inactive); activation takes it as If-Match',
    documentation_only=True,
)
IfNoneMatch = Annotated[
    str | None,
    HeaderParameter(name="if-none-match", required=False, description="304 when the bundle is this"),
]
StatusQuery = Annotated[str | None, Parameter(required=False)]
BUNDLE_HEADERS = [
    ResponseHeader(name=name, description=text, documentation_only=True)
    for name, text in (
        ("etag", "SHA-256 of the bundle bytes"),
        ("x-caracal-bundle-signature", "Ed25519 signature of the bundle bytes, base64url"),
        ("x-caracal-bundle-key-id", "the signing key's id (GET /v1/policy-bundles/public-key)"),
        ("x-caracal-bundle-revision", "the policy-set version number (monotonic per set)"),
    )
]
BUNDLE_RESPONSES = {
    200: ResponseSpec(
        data_container=PolicyBundle,
        media_type=policy_set_bundles.MEDIA_TYPE,
        description="The signed bundle (docs/bundles.md)",
        generate_examples=False,
    ),
    304: ResponseSpec(data_container=None, description="Not modified (If-None-Match holds its ETag)"),
}


def _status_query(name: str, value: str | None) -> str | None:
    """The query is checked as a body (`invalid_body`, CONTRACT.md §4.6), not as `invalid_query`."""
    if value is not None and (not value or "\x00" in value or len(value) > QUERY_MAX):
        message = f"{name} must be a string of 1..{QUERY_MAX} characters"
        raise ValidationException(message, extra=[{"message": message, "key": name}])
    return value


class PolicySetController(Controller):
    path = "/v1/zones/{zone_id:str}/policy-sets"
    tags = ["policy sets"]
    dependencies = RESOURCES

    @get("/", dependencies=PAGE, response_headers=[LINK], summary="List a zone's policy sets")
    async def list_policy_sets(
        self, request: Request[Any, Any, Any], zone_id: FromPath[str], res: ResourcesDep, page: PageDep
    ) -> Response[list[PolicySet]]:
        async def fetch(conn: Any, wanted: Page) -> Any:
            return await policy_sets.list_policy_sets(conn, zone_id, wanted)

        return await listed(request, res.engine, page, fetch)

    @post(
        "/",
        opt=BODY,
        before_request=zone_before_body,
        responses=problems(404, 409),
        summary="Create a policy set and its (inactive) binding",
    )
    async def create_policy_set(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[PolicySetCreate],
    ) -> Response[PolicySet]:
        return await res.write(
            request, lambda conn: policy_sets.create_policy_set(conn, zone_id, data, caller_of(request))
        )

    @get("/{policy_set_id:str}", response_headers=[ETAG], summary="Get a policy set")
    async def get_policy_set(
        self, zone_id: FromPath[str], policy_set_id: FromPath[str], res: ResourcesDep
    ) -> Response[PolicySet]:
        return tagged(await res.read(lambda conn: policy_sets.get_policy_set(conn, zone_id, policy_set_id)))

    @delete(
        "/{policy_set_id:str}",
        responses=conditional(),
        summary="Archive a policy set (an active one stops being active)",
    )
    async def delete_policy_set(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        policy_set_id: FromPath[str],
        res: ResourcesDep,
        if_match: IfMatch = None,
    ) -> None:
        async with res.writing(request) as conn:
            await require_unchanged(
                conn,
                if_match,
                "policy_set",
                (zone_id, policy_set_id),
                lambda: policy_sets.get_policy_set(conn, zone_id, policy_set_id),
            )
            await policy_sets.delete_policy_set(conn, zone_id, policy_set_id, caller_of(request))

    @post(
        "/{policy_set_id:str}/versions",
        opt=BODY,
        responses=problems(404, 422),
        summary="Create a policy-set version (numbered max+1) from a manifest of policy versions",
    )
    async def create_version(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        policy_set_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[PolicySetVersionCreate],
    ) -> Response[PolicySetVersionCreated]:
        return await res.write(
            request,
            lambda conn: policy_set_versions.create_version(
                conn, zone_id, policy_set_id, data, caller_of(request)
            ),
        )

    @get(
        "/{policy_set_id:str}/versions",
        dependencies=PAGE,
        response_headers=[LINK],
        summary="List a policy set's versions",
    )
    async def list_versions(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        policy_set_id: FromPath[str],
        res: ResourcesDep,
        page: PageDep,
    ) -> Response[list[PolicySetVersion]]:
        async def fetch(conn: Any, wanted: Page) -> Any:
            return await policy_set_versions.list_versions(conn, zone_id, policy_set_id, wanted)

        return await listed(request, res.engine, page, fetch)

    @get(
        "/{policy_set_id:str}/versions/{version_id:str}",
        response_headers=[ETAG],
        summary="Get a policy-set version",
    )
    async def get_version(
        self,
        zone_id: FromPath[str],
        policy_set_id: FromPath[str],
        version_id: FromPath[str],
        res: ResourcesDep,
    ) -> Response[PolicySetVersionDetail]:
        return tagged(
            await res.read(
                lambda conn: policy_set_versions.get_version(conn, zone_id, policy_set_id, version_id)
            )
        )

    @get(
        "/{policy_set_id:str}/versions/{version_id:str}/bundle",
        response_headers=BUNDLE_HEADERS,
        responses=BUNDLE_RESPONSES,
        summary="The version as a signed, deterministic policy bundle (ETag; 304 on If-None-Match)",
    )
    async def get_bundle(
        self,
        zone_id: FromPath[str],
        policy_set_id: FromPath[str],
        version_id: FromPath[str],
        res: ResourcesDep,
        if_none_match: IfNoneMatch = None,
    ) -> Response[bytes]:
        key = policy_set_bundles.require_key(res.settings.bundle_signing_key)
        bundle = await res.read(
            lambda conn: policy_set_bundles.read_bundle(conn, zone_id, policy_set_id, version_id, key)
        )
        headers = {
            "etag": bundle.etag,
            "x-caracal-bundle-signature": bundle.signature,
            "x-caracal-bundle-key-id": bundle.key_id,
            "x-caracal-bundle-revision": str(bundle.revision),
        }
        if if_none_match_holds(if_none_match, bundle.etag):
            return Response(b"", status_code=304, headers=headers)
        return Response(bundle.body, media_type=policy_set_bundles.MEDIA_TYPE, headers=headers)

    @post(
        "/{policy_set_id:str}/simulate",
        opt=BODY,
        status_code=200,
        responses=problems(404, 422),
        summary="Evaluate a version against an input in-process (nothing changes)",
    )
    async def simulate(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        policy_set_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[SimulationRequest],
    ) -> Response[Simulation]:
        version, warnings = await res.read(
            lambda conn: policy_set_simulation.simulate(conn, zone_id, policy_set_id, data)
        )
        return await res.answer(
            request, await policy_set_simulation.simulation(policy_set_id, version, warnings, data)
        )

    @post(
        "/{policy_set_id:str}/activate",
        opt=BODY,
        status_code=202,
        responses=problems(404, 409, 412, 422),
        summary="Make a version the zone's one active policy (others cleared), and tell the STS",
    )
    async def activate(
        self,
        *,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        policy_set_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[Activation],
        if_match: IfMatch = None,
    ) -> Response[ActivationAccepted]:
        return await res.write(
            request,
            lambda conn: policy_set_activation.activate(
                conn,
                zone_id,
                policy_set_id,
                data,
                if_match=if_match,
                caller=caller_of(request),
                current_set=lambda: policy_sets.get_policy_set(conn, zone_id, policy_set_id),
            ),
        )

    @get(
        "/{policy_set_id:str}/activation-status",
        response_headers=[VERSION_ETAG],
        summary="Whether a version is active, its invalidation delivered and the STS loaded it",
    )
    async def activation_status(
        self,
        zone_id: FromPath[str],
        policy_set_id: FromPath[str],
        res: ResourcesDep,
        version_id: StatusQuery = None,
        outbox_id: StatusQuery = None,
    ) -> Response[ActivationStatus]:
        wanted, outbox = _status_query("version_id", version_id), _status_query("outbox_id", outbox_id)
        recorded = await res.read(
            lambda conn: policy_set_status.recorded_status(conn, zone_id, policy_set_id, wanted, outbox)
        )
        sts = await policy_set_status.sts_view(res.settings.sts_url, zone_id, recorded.version_id)
        status = policy_set_status.activation_status(recorded, sts)
        return Response(status, headers={"etag": activation_etag(status.active_version_id)})


@get(
    "/v1/policy-bundles/public-key",
    opt={"public": True},
    tags=["policy sets"],
    dependencies=RESOURCES,
    security=[{}],
    summary="The Ed25519 public key that verifies policy bundles (no token needed)",
)
async def bundle_public_key(res: ResourcesDep) -> BundlePublicKey:
    return policy_set_bundles.public_key_wire(policy_set_bundles.require_key(res.settings.bundle_signing_key))
