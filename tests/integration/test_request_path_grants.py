"""The grant routes' budgets, counted at the Postgres wire (tests/integration/wire_budget.py)."""

from __future__ import annotations

import math

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.grant_world import GrantWorld, grant_world, insert_sessions
from tests.integration.wire_budget import ADMIN, Counted, measure

# A write is BEGIN, its statements, the outbox row(s), the audit row and COMMIT.
BUDGETS = {
    "get_one": 1,
    "get_list": 1,
    # zone, application, resource and the scope rule checked and the grant inserted in one statement
    "post": 5,
    # revoke the grant, one batch of sessions (none found: no event rows), change event, audit
    "delete_no_sessions": 6,
}


def delete_budget(sessions: int) -> int:
    """Each further batch of up to 1000 sessions is two round trips: revoke them, insert their events."""
    return BUDGETS["delete_no_sessions"] + sessions // 1000 + math.ceil(sessions / 1000)


def one_transaction(counted: Counted) -> bool:
    return [q.split()[0].upper().rstrip(";") for q in counted.wire.queries] == ["BEGIN", "COMMIT"]


async def _world(counted: Counted, engine: AsyncEngine) -> GrantWorld:
    return await grant_world(counted.http, ADMIN, engine)


async def _grant(counted: Counted, world: GrantWorld, user_id: str = "user-1") -> str:
    response = await counted.http.post(
        f"/v1/zones/{world.zone_id}/grants", json=world.body(user_id=user_id), headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_get_one_grant_is_one_round_trip(counted: Counted, engine: AsyncEngine) -> None:
    world = await _world(counted, engine)
    grant_id = await _grant(counted, world)
    await measure(counted, "GET", f"/v1/zones/{world.zone_id}/grants/{grant_id}")
    assert await measure(counted, "GET", f"/v1/zones/{world.zone_id}/grants/{grant_id}") <= BUDGETS["get_one"]


async def test_list_of_200_grants_with_joined_names_is_one_round_trip(
    counted: Counted, engine: AsyncEngine
) -> None:
    """200 rows, each with its application, resource and provider names: one statement, no N+1."""
    world = await _world(counted, engine)
    for n in range(201):
        await _grant(counted, world, user_id=f"user-{n}")
    url = f"/v1/zones/{world.zone_id}/grants"
    await measure(counted, "GET", url)
    assert await measure(counted, "GET", url) <= BUDGETS["get_list"]
    filtered = f"{url}?provider_id={world.provider_id}&status=active&scopes=mail:read"
    await measure(counted, "GET", filtered)
    assert await measure(counted, "GET", filtered) <= BUDGETS["get_list"]


async def test_post_grant_is_one_transaction(counted: Counted, engine: AsyncEngine) -> None:
    world = await _world(counted, engine)
    url = f"/v1/zones/{world.zone_id}/grants"
    await measure(counted, "POST", url, world.body(user_id="warm"), expect=201)
    assert await measure(counted, "POST", url, world.body(user_id="measured"), expect=201) <= BUDGETS["post"]
    assert one_transaction(counted)


async def test_delete_grant_is_one_transaction_whatever_the_sessions(
    counted: Counted, engine: AsyncEngine
) -> None:
    """Without sessions, and with 2,500 of them (three batches), DELETE is one transaction."""
    world = await _world(counted, engine)
    warm, alone, busy = [await _grant(counted, world, user_id=user) for user in ("warm", "alone", "busy")]
    await measure(counted, "DELETE", f"/v1/zones/{world.zone_id}/grants/{warm}", expect=204)
    spent = await measure(counted, "DELETE", f"/v1/zones/{world.zone_id}/grants/{alone}", expect=204)
    assert spent <= BUDGETS["delete_no_sessions"] and one_transaction(counted), spent
    await insert_sessions(engine, world.zone_id, "busy", 2500)
    spent = await measure(counted, "DELETE", f"/v1/zones/{world.zone_id}/grants/{busy}", expect=204)
    assert spent <= delete_budget(2500) and one_transaction(counted), spent
