"""Providers' budgets, counted at the Postgres wire: round trips and connections per request."""

from __future__ import annotations

from tests.integration.api_helpers import API_KEY_CONFIG
from tests.integration.wire_budget import ADMIN, Counted, measure

# Round trips once the token is cached and the statements are prepared on the connection. A write
# is BEGIN, its statements, the outbox row, the audit row and COMMIT; creation checks the zone first.
BUDGETS = {
    "get_one": 1,
    "get_list": 1,
    "post_with_identifier": 6,
    "post_generated_identifier": 8,
    "patch_name": 5,
    "patch_config_only": 6,
    "delete": 5,
}


async def _zone(counted: Counted) -> str:
    response = await counted.http.post("/v1/zones", json={"name": "Budget"}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _provider(counted: Counted, zone_id: str, name: str) -> str:
    body = {"name": name, "kind": "api_key", "config_json": API_KEY_CONFIG}
    response = await counted.http.post(f"/v1/zones/{zone_id}/providers", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_get_one_provider_is_one_round_trip(counted: Counted) -> None:
    zone_id = await _zone(counted)
    url = f"/v1/zones/{zone_id}/providers/{await _provider(counted, zone_id, 'one')}"
    await measure(counted, "GET", url)
    assert await measure(counted, "GET", url) <= BUDGETS["get_one"]


async def test_a_page_of_providers_is_one_round_trip_whatever_its_size(counted: Counted) -> None:
    zone_id = await _zone(counted)
    for n in range(25):
        await _provider(counted, zone_id, f"p{n}")
    url = f"/v1/zones/{zone_id}/providers"
    await measure(counted, "GET", f"{url}?limit=2")
    assert await measure(counted, "GET", f"{url}?limit=2") <= BUDGETS["get_list"]
    assert await measure(counted, "GET", f"{url}?limit=25") <= BUDGETS["get_list"]


async def test_post_is_one_transaction_within_its_budget(counted: Counted) -> None:
    zone_id = await _zone(counted)
    url = f"/v1/zones/{zone_id}/providers"
    body = {"kind": "api_key", "config_json": API_KEY_CONFIG}
    await measure(counted, "POST", url, {**body, "identifier": "provider://warm"}, expect=201)
    spent = await measure(counted, "POST", url, {**body, "identifier": "provider://given"}, expect=201)
    assert spent <= BUDGETS["post_with_identifier"], counted.wire.queries
    assert [q.split()[0].upper().rstrip(";") for q in counted.wire.queries] == ["BEGIN", "COMMIT"]
    spent = await measure(counted, "POST", url, {**body, "name": "Generated"}, expect=201)
    assert spent <= BUDGETS["post_generated_identifier"], counted.wire.queries


async def test_patch_and_delete_are_one_transaction_within_their_budgets(counted: Counted) -> None:
    zone_id = await _zone(counted)
    first, second = await _provider(counted, zone_id, "a"), await _provider(counted, zone_id, "b")
    base = f"/v1/zones/{zone_id}/providers"
    await measure(counted, "PATCH", f"{base}/{first}", {"name": "renamed"})
    assert await measure(counted, "PATCH", f"{base}/{second}", {"name": "renamed"}) <= BUDGETS["patch_name"]
    config = {"config_json": {"header_name": "X-Other"}}
    await measure(counted, "PATCH", f"{base}/{first}", config)
    assert await measure(counted, "PATCH", f"{base}/{second}", config) <= BUDGETS["patch_config_only"]
    await measure(counted, "DELETE", f"{base}/{first}", expect=204)
    assert await measure(counted, "DELETE", f"{base}/{second}", expect=204) <= BUDGETS["delete"]
