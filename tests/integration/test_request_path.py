"""The request path's budgets, counted at the Postgres wire: round trips and connections per request."""

from __future__ import annotations

from tests.integration.wire_budget import ADMIN, Counted, measure, warm

# Round trips per request once the token is cached and the statements are prepared on the connection.
# A write is BEGIN, its statements, the outbox row, the audit row and COMMIT; a create that is one
# INSERT carries its outbox and audit rows in that statement, in autocommit.
BUDGETS = {
    "get_one": 1,
    "get_list": 1,
    "post_zone_with_slug": 1,  # the zone's INSERT with its outbox and audit rows as CTEs
    "post_zone_generated_slug": 1,  # a new name's slug: tried as it is, no lock, no look-up
    # that statement inserted nothing; then BEGIN, the lock, the taken slugs, the insert of the first
    # free one, the outbox and audit rows, COMMIT
    "post_zone_taken_slug": 7,
    "patch_zone": 1,  # the UPDATE with its outbox and audit rows as CTEs
    "delete_zone": 1,  # the same for the archiving UPDATE
    # with If-Match, or turning DCR off: BEGIN, the locked read, the UPDATE, outbox and audit, COMMIT
    "patch_zone_in_transaction": 5,
}


async def _zone(counted: Counted, name: str) -> str:
    response = await counted.http.post("/v1/zones", json={"name": name}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_authenticated_get_is_one_round_trip_on_one_connection(counted: Counted) -> None:
    """GET /v1/zones/{id}: the handler's one statement in autocommit (no BEGIN, pre-ping or token read)."""
    zone_id = await _zone(counted, "Budget One")
    await measure(counted, "GET", f"/v1/zones/{zone_id}")
    assert await measure(counted, "GET", f"/v1/zones/{zone_id}") <= BUDGETS["get_one"]
    assert not any(q.upper().startswith("BEGIN") for q in counted.wire.queries), counted.wire.queries


async def test_list_page_is_one_round_trip_whatever_its_size(counted: Counted) -> None:
    """No N+1: a page of many zones costs what a page of one does."""
    for n in range(30):
        await _zone(counted, f"Budget List {n}")
    await measure(counted, "GET", "/v1/zones?limit=5")
    assert await measure(counted, "GET", "/v1/zones?limit=5") <= BUDGETS["get_list"]
    assert await measure(counted, "GET", "/v1/zones?limit=30") <= BUDGETS["get_list"]


async def test_post_is_one_transaction_holding_state_outbox_and_audit(counted: Counted) -> None:
    """The zone, its outbox row and its audit row commit together: one statement in autocommit, or,
    when the name's slug is taken, one BEGIN and one COMMIT around the locked search."""
    await _zone(counted, "Warm-up")
    await measure(counted, "POST", "/v1/zones", {"name": "Sluggy", "slug": "sluggy-1"}, expect=201)
    spent = await measure(counted, "POST", "/v1/zones", {"name": "Sluggy", "slug": "sluggy-2"}, expect=201)
    assert spent <= BUDGETS["post_zone_with_slug"]
    assert counted.wire.queries == [], counted.wire.queries  # no BEGIN, no COMMIT
    spent = await measure(counted, "POST", "/v1/zones", {"name": "Generated"}, expect=201)
    assert spent <= BUDGETS["post_zone_generated_slug"]
    spent = await measure(counted, "POST", "/v1/zones", {"name": "Generated"}, expect=201)
    assert spent <= BUDGETS["post_zone_taken_slug"]
    assert [q.split()[0].upper().rstrip(";") for q in counted.wire.queries] == ["BEGIN", "COMMIT"]


async def test_patch_and_delete_stay_within_their_budgets(counted: Counted) -> None:
    """PATCH and DELETE each use one connection and one transaction (a zone's: one statement)."""
    first, second = await _zone(counted, "Patch Me"), await _zone(counted, "Patch Me Too")
    await measure(counted, "PATCH", f"/v1/zones/{first}", {"name": "Patched"})
    assert (
        await measure(counted, "PATCH", f"/v1/zones/{second}", {"name": "Patched"}) <= BUDGETS["patch_zone"]
    )
    assert counted.wire.queries == [], counted.wire.queries  # no BEGIN, no COMMIT
    spent = await measure(counted, "PATCH", f"/v1/zones/{second}", {"dcr_enabled": False})
    assert spent <= BUDGETS["patch_zone_in_transaction"]
    await measure(counted, "DELETE", f"/v1/zones/{first}", expect=204)
    assert await measure(counted, "DELETE", f"/v1/zones/{second}", expect=204) <= BUDGETS["delete_zone"]
    assert counted.wire.queries == [], counted.wire.queries


async def test_failed_authentication_floods_write_nothing(counted: Counted) -> None:
    """50 requests with a bad token and 50 to unknown paths: no audit transaction, no write at all."""
    await warm(counted)
    counted.wire.reset()
    for _ in range(50):
        bad = await counted.http.get("/v1/zones", headers={"Authorization": "Bearer nope-nope-nope"})
        assert bad.status_code == 401
        assert (await counted.http.get("/v1/nowhere", headers=ADMIN)).status_code == 404
    await counted.resources.settled()
    assert not any(q.upper().startswith("BEGIN") for q in counted.wire.queries), counted.wire.queries
