"""Idempotency-Key's cost at the Postgres wire: nothing without the header; with it, one lookup
before the handler and the key's insert inside the POST's own transaction; a replay is the lookup.

POST /v1/zones without a key is one statement in autocommit; with one it takes the transaction
(its stored answer commits with it): BEGIN, the zone, its events and audit row, COMMIT."""

from __future__ import annotations

from tests.integration.wire_budget import ADMIN, Counted, measure, warm

TRANSACTION = 4  # a keyed POST /v1/zones before its key's two statements


async def keyed_post(counted: Counted, key: str, body: dict[str, str]) -> tuple[int, bool]:
    """Round trips of one keyed POST /v1/zones, and whether it was a replay."""
    await warm(counted)
    counted.wire.reset()
    response = await counted.http.post("/v1/zones", json=body, headers={**ADMIN, "Idempotency-Key": key})
    assert response.status_code == 201, response.text
    await counted.resources.settled()
    assert counted.wire.connections <= 1, counted.wire.round_trips
    return counted.wire.total, response.headers.get("idempotent-replayed") == "true"


async def test_a_key_costs_one_lookup_and_one_insert_and_a_replay_only_the_lookup(counted: Counted) -> None:
    await measure(counted, "POST", "/v1/zones", {"name": "Warm", "slug": "warm-1"}, expect=201)
    plain = await measure(counted, "POST", "/v1/zones", {"name": "Plain", "slug": "plain-1"}, expect=201)
    assert plain == 1
    await keyed_post(counted, "warm-key", {"name": "Warm", "slug": "warm-2"})
    first, replayed = await keyed_post(counted, "k", {"name": "Keyed", "slug": "keyed-1"})
    assert (first, replayed) == (TRANSACTION + 2, False)
    again, replayed = await keyed_post(counted, "k", {"name": "Keyed", "slug": "keyed-1"})
    assert (again, replayed) == (1, True)
