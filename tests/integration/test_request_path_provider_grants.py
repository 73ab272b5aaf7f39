"""The provider-grant routes' budgets, counted at the Postgres wire (tests/integration/wire_budget.py)."""

from __future__ import annotations

from tests.integration.test_api_provider_grants import World, oauth_world
from tests.integration.wire_budget import ADMIN, Counted, measure

# A write is BEGIN, its statements, the outbox row, the audit row and COMMIT.
BUDGETS = {
    # zone, provider, resource (each its aggregate's require_live_*), the upsert
    "post": 8,
    # the revoking UPDATE
    "revoke": 5,
    # zone, provider, resource in autocommit (the state goes to Redis), then the POST's audit row in its
    # own transaction (BEGIN, INSERT, COMMIT: nothing else is written)
    "authorize": 6,
}


def one_transaction(counted: Counted) -> bool:
    return [q.split()[0].upper().rstrip(";") for q in counted.wire.queries] == ["BEGIN", "COMMIT"]


async def _world(counted: Counted) -> World:
    return await oauth_world(counted.http, ADMIN)


async def test_post_is_one_transaction_whether_it_creates_or_overwrites(counted: Counted) -> None:
    world = await _world(counted)
    assert await measure(counted, "POST", world.base, world.body(), expect=201) <= BUDGETS["post"]
    assert one_transaction(counted), counted.wire.queries
    assert await measure(counted, "POST", world.base, world.body(user_id="u2"), expect=201) <= BUDGETS["post"]
    assert await measure(counted, "POST", world.base, world.body(user_id="u2"), expect=201) <= BUDGETS["post"]
    assert one_transaction(counted), counted.wire.queries


async def test_revoke_is_one_transaction(counted: Counted) -> None:
    world = await _world(counted)
    await measure(counted, "POST", world.base, world.body(), expect=201)
    body = {k: world.body()[k] for k in ("user_id", "resource_id", "provider_id")}
    assert await measure(counted, "POST", f"{world.base}/revoke", body) <= BUDGETS["revoke"]
    assert one_transaction(counted), counted.wire.queries


async def test_authorize_writes_nothing_but_its_audit_row(counted: Counted) -> None:
    world = await _world(counted)
    body = {k: world.body()[k] for k in ("user_id", "resource_id", "provider_id", "scopes")}
    assert await measure(counted, "POST", f"{world.base}/oauth/authorize", body) <= BUDGETS["authorize"]
    assert one_transaction(counted), counted.wire.queries  # the audit row's
