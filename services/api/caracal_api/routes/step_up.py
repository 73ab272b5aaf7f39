"""/v1/zones/{zone_id}/step-up-challenges (CONTRACT.md §4.10): reads, and satisfy (approve tokens too)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from caracal.domain import step_up
from caracal.domain.step_up import ChallengeSatisfy, SatisfiedChallenge, StepUpChallenge
from caracal_api.openapi import problems
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import LINK, PAGE, PageDep, caller_of, listed
from caracal_api.routes.conditional import ETAG, tagged

# approval: the one mutation an `approve` token may make (caracal_api.auth)
SATISFY = {"body_error": "invalid_request", "approval": True}


class StepUpChallengeController(Controller):
    path = "/v1/zones/{zone_id:str}/step-up-challenges"
    tags = ["step-up challenges"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @get(
        "/",
        dependencies=PAGE,
        response_headers=[LINK],
        summary="List a zone's step-up challenges (newest first; Link header for the next page)",
    )
    async def list_challenges(
        self, request: Request[Any, Any, Any], zone_id: FromPath[str], res: ResourcesDep, page: PageDep
    ) -> Response[list[StepUpChallenge]]:
        return await listed(
            request, res.engine, page, lambda conn, page: step_up.list_challenges(conn, zone_id, page)
        )

    @get("/{challenge_id:str}", response_headers=[ETAG], summary="Get a step-up challenge")
    async def get_challenge(
        self, zone_id: FromPath[str], challenge_id: FromPath[str], res: ResourcesDep
    ) -> Response[StepUpChallenge]:
        return tagged(await res.read(lambda conn: step_up.get_challenge(conn, zone_id, challenge_id)))

    @post(
        "/{challenge_id:str}/satisfy",
        status_code=200,
        opt=SATISFY,
        responses=problems(409),
        summary="Satisfy a challenge: once, unexpired, by an approver other than its session's subject",
    )
    async def satisfy_challenge(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        challenge_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[ChallengeSatisfy],
    ) -> Response[SatisfiedChallenge]:
        return await res.write(
            request,
            lambda conn: step_up.satisfy_challenge(conn, zone_id, challenge_id, data, caller_of(request)),
        )
