"""/v1/zones/{zone_id}/policies, POST /v1/policies/validate, GET /v1/policy-templates (CONTRACT.md §4.5).

Rego is judged in a Rego worker before any transaction opens, so no connection waits on it.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from caracal.domain import policies
from caracal.domain.policies import (
    INPUT_SCHEMA_VERSION,
    Policy,
    PolicyCreate,
    PolicyCreated,
    PolicyDetail,
    PolicyVersionCreate,
    PolicyVersionCreated,
    checked_content,
)
from caracal.domain.policy_templates import PolicyTemplate, policy_templates
from caracal.domain.wire import Resource
from caracal.errors import Unprocessable
from caracal.etags import require_unchanged
from caracal.rego import PACKAGE, RESULT_RULE
from caracal_api.openapi import problems
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import LINK, PAGE, PageDep, caller_of, listed, zone_before_body
from caracal_api.routes.conditional import ETAG, IfMatch, conditional, tagged

BODY = {"body_error": "invalid_body"}  # the contract's throwing-parse format


class OutputContract(Resource):
    package: str
    rule: str
    decision: list[str]
    evaluation_status: list[str]


class Validation(Resource):
    valid: bool
    schema_version: str
    input_schema_version: str
    output_contract: OutputContract
    warnings: list[str]


OUTPUT_CONTRACT = OutputContract(
    package=PACKAGE, rule=RESULT_RULE, decision=["allow", "deny"], evaluation_status=["complete"]
)


class PolicyController(Controller):
    path = "/v1/zones/{zone_id:str}/policies"
    tags = ["policies"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @get("/", dependencies=PAGE, response_headers=[LINK], summary="List a zone's policies")
    async def list_policies(
        self, request: Request[Any, Any, Any], zone_id: FromPath[str], res: ResourcesDep, page: PageDep
    ) -> Response[list[Policy]]:
        return await listed(
            request, res.engine, page, lambda conn, wanted: policies.list_policies(conn, zone_id, wanted)
        )

    @get("/{policy_id:str}", response_headers=[ETAG], summary="Get a policy with every version, newest first")
    async def get_policy(
        self, zone_id: FromPath[str], policy_id: FromPath[str], res: ResourcesDep
    ) -> Response[PolicyDetail]:
        return tagged(await res.read(lambda conn: policies.get_policy(conn, zone_id, policy_id)))

    @post(
        "/",
        opt=BODY,
        before_request=zone_before_body,
        responses=problems(409, 422),
        summary="Create a policy and its version 1 (Rego checked; nothing invalid is stored)",
    )
    async def create_policy(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[PolicyCreate],
    ) -> Response[PolicyCreated]:
        checked = await checked_content(data.content, data.schema_version)
        return await res.write(
            request, lambda conn: policies.create_policy(conn, zone_id, data, checked, caller_of(request))
        )

    @post(
        "/{policy_id:str}/versions",
        opt=BODY,
        responses=problems(422),
        summary="Add a policy version (number max+1; Rego checked)",
    )
    async def create_policy_version(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        policy_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[PolicyVersionCreate],
    ) -> Response[PolicyVersionCreated]:
        checked = await checked_content(data.content, data.schema_version)
        checked.require_valid()  # before the transaction: bad content outranks a missing policy
        return await res.write(
            request,
            lambda conn: policies.create_policy_version(
                conn, zone_id, policy_id, checked, caller_of(request)
            ),
        )

    @delete("/{policy_id:str}", responses=conditional(), summary="Archive a policy (its versions stay)")
    async def delete_policy(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        policy_id: FromPath[str],
        res: ResourcesDep,
        if_match: IfMatch = None,
    ) -> None:
        async with res.writing(request) as conn:
            await require_unchanged(
                conn,
                if_match,
                "policy",
                (zone_id, policy_id),
                lambda: policies.get_policy(conn, zone_id, policy_id),
            )
            await policies.delete_policy(conn, zone_id, policy_id, caller_of(request))


@post(
    "/v1/policies/validate",
    opt=BODY,
    status_code=200,
    responses=problems(422),
    tags=["policies"],
    dependencies={"res": Provide(provide_resources, sync_to_thread=False)},
    summary="Check a Rego module against the policy contract (zone tokens may call it)",
)
async def validate_policy(
    request: Request[Any, Any, Any], res: ResourcesDep, data: JSONBody[PolicyVersionCreate]
) -> Response[Validation]:
    checked = await checked_content(data.content, data.schema_version)
    try:
        checked.require_valid()
    except Unprocessable as refused:
        raise Unprocessable(refused.code, refused.detail, valid=False) from None
    assert checked.check is not None
    validation = Validation(
        valid=True,
        schema_version=checked.schema_version,
        input_schema_version=INPUT_SCHEMA_VERSION,
        output_contract=OUTPUT_CONTRACT,
        warnings=list(checked.check.warnings),
    )
    return await res.answer(request, validation)


@get("/v1/policy-templates", tags=["policies"], summary="The nine policy templates (zone tokens may call it)")
async def list_policy_templates() -> list[PolicyTemplate]:
    return list(policy_templates())
