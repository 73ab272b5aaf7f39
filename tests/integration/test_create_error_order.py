"""Create routes answer a missing zone before a bad body (CONTRACT.md §4: 404 zone_not_found, then 400)."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.api_helpers import make_zone

# create route under /v1/zones/{z} -> the 400 code its bad body gets in a zone that exists
CREATE_ROUTES = {
    "applications": "invalid_application",
    "providers": "invalid_provider",
    "resources": "invalid_resource",
    "grants": "invalid_body",
    "provider-grants": "invalid_provider_grant",
    "provider-grants/oauth/authorize": "invalid_provider_oauth_authorize",
}
BAD_BODY = {"name": 7, "scopes": "not a list"}


@pytest.mark.parametrize(("route", "body_code"), sorted(CREATE_ROUTES.items()))
async def test_a_bad_body_for_a_missing_zone_is_404_zone_not_found(
    client: httpx.AsyncClient, admin: dict[str, str], route: str, body_code: str
) -> None:
    """The zone is judged first; in a zone that exists the same body gets the route's 400 code."""
    missing = await client.post(f"/v1/zones/no-such-zone/{route}", json=BAD_BODY, headers=admin)
    assert (missing.status_code, missing.json()["error"]) == (404, "zone_not_found"), missing.text
    zone_id = (await make_zone(client, admin))["id"]
    present = await client.post(f"/v1/zones/{zone_id}/{route}", json=BAD_BODY, headers=admin)
    assert (present.status_code, present.json()["error"]) == (400, body_code), present.text


@pytest.mark.parametrize("route", sorted(CREATE_ROUTES))
async def test_an_archived_zone_outranks_a_bad_body_too(
    client: httpx.AsyncClient, admin: dict[str, str], route: str
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    assert (await client.delete(f"/v1/zones/{zone_id}", headers=admin)).status_code == 204
    response = await client.post(f"/v1/zones/{zone_id}/{route}", json=BAD_BODY, headers=admin)
    assert (response.status_code, response.json()["error"]) == (404, "zone_not_found"), response.text
