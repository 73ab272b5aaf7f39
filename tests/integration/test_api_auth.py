"""The admin guard: bearer parsing, revocation, zone scope, capabilities, rate limits, path params."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from sqlalchemy import text

from caracal_api.auth import forwarded_client
from caracal_api.resources import Resources
from tests.integration.api_helpers import app_with, bearer, make_token, make_zone, settle


async def same_minute(room: float = 5) -> None:
    """Rate-limit windows are calendar minutes: start a counting test well inside one."""
    into = time.time() % 60
    if into > 60 - room:
        await asyncio.sleep(60 - into + 0.1)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "bearer {token}",
        "Bearer ",
        "Bearer    ",
        "Basic {token}",
        "Bearer{token}",
        "Bearer " + "a" * 4097,
        "Bearer unknown-token",
        "Bearer {token}x",
    ],
)
async def test_bad_authorization_is_401_without_www_authenticate(
    client: httpx.AsyncClient, admin: dict[str, str], authorization: str | None
) -> None:
    """Missing, malformed, oversized or unknown bearers: 401 invalid_admin_token, no challenge header."""
    token = admin["Authorization"].removeprefix("Bearer ")
    headers = {} if authorization is None else {"Authorization": authorization.format(token=token)}
    response = await client.get("/v1/zones", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_admin_token"
    assert response.headers["content-type"] == "application/problem+json"
    assert "www-authenticate" not in response.headers


async def test_bearer_with_surrounding_spaces_is_trimmed(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """The text after 'Bearer ' is trimmed before lookup."""
    token = admin["Authorization"].removeprefix("Bearer ")
    assert (
        await client.get("/v1/zones", headers={"Authorization": f"Bearer   {token}  "})
    ).status_code == 200


async def test_revoked_token_is_refused_on_the_next_request(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A revoked token answers 401 at once."""
    token = await make_token(client, admin)
    assert (await client.get("/v1/zones", headers=bearer(token["token"]))).status_code == 200
    assert (await client.delete(f"/v1/admin-tokens/{token['id']}", headers=admin)).status_code == 204
    refused = await client.get("/v1/zones", headers=bearer(token["token"]))
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_admin_token")


async def test_zone_token_reaches_only_its_own_zone(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """A zone token may GET, PATCH and DELETE its zone; lists, creates and other zones are 403."""
    own = (await make_zone(client, admin, name="Own"))["id"]
    other = (await make_zone(client, admin, name="Other"))["id"]
    zone_token = bearer((await make_token(client, admin, scope="zone", zone_id=own))["token"])
    for response in (
        await client.get("/v1/zones", headers=zone_token),
        await client.post("/v1/zones", json={"name": "x"}, headers=zone_token),
        await client.get(f"/v1/zones/{other}", headers=zone_token),
        await client.patch(f"/v1/zones/{other}", json={"name": "x"}, headers=zone_token),
        await client.delete(f"/v1/zones/{other}", headers=zone_token),
        await client.get(f"/v1/zones/{own}x", headers=zone_token),
    ):
        assert (response.status_code, response.json()["error"]) == (403, "admin_token_zone_mismatch")
    assert (await client.get(f"/v1/zones/{own}", headers=zone_token)).status_code == 200
    assert (await client.get(f"/v1/zones/{own}/dcr-status", headers=zone_token)).status_code == 200
    patched = await client.patch(f"/v1/zones/{own}", json={"name": "Mine"}, headers=zone_token)
    assert (patched.status_code, patched.json()["name"]) == (200, "Mine")
    assert (await client.delete(f"/v1/zones/{own}", headers=zone_token)).status_code == 204
    assert (await client.get(f"/v1/zones/{other}", headers=admin)).status_code == 200


@pytest.mark.parametrize(
    ("capability", "code"), [("read", "admin_token_read_only"), ("approve", "admin_token_approve_only")]
)
async def test_read_and_approve_tokens_cannot_change_zones(
    client: httpx.AsyncClient, admin: dict[str, str], capability: str, code: str
) -> None:
    """read and approve tokens may GET zones; POST, PATCH and DELETE answer 403 with their code."""
    zone_id = (await make_zone(client, admin))["id"]
    limited = bearer((await make_token(client, admin, capability=capability))["token"])
    assert (await client.get("/v1/zones", headers=limited)).status_code == 200
    assert (await client.get(f"/v1/zones/{zone_id}", headers=limited)).status_code == 200
    for response in (
        await client.post("/v1/zones", json={"name": "x"}, headers=limited),
        await client.patch(f"/v1/zones/{zone_id}", json={"name": "x"}, headers=limited),
        await client.delete(f"/v1/zones/{zone_id}", headers=limited),
    ):
        assert (response.status_code, response.json()["error"]) == (403, code)
    assert (await client.get(f"/v1/zones/{zone_id}", headers=admin)).json()["name"] == "Zone"


async def test_failed_authentications_over_the_limit_get_429(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources
) -> None:
    """After ADMIN_AUTH_FAIL_LIMIT_PER_MIN failures from one address, the next failure is 429 rate_limited."""
    await same_minute()
    async with app_with(resources, peers=("127.0.0.1", "127.0.0.2"), auth_fail_limit_per_min=3) as (one, two):
        statuses = [(await one.get("/v1/zones", headers=bearer("wrong"))).status_code for _ in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        limited = await one.get("/v1/zones")
        assert limited.json()["error"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60  # until the window's minute ends
        assert (await one.get("/v1/zones", headers=admin)).status_code == 200
        assert (await two.get("/v1/zones", headers=bearer("wrong"))).status_code == 401


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    """X-Forwarded-For is ignored unless TRUST_PROXY, so rotating it does not escape the failure limit;
    behind a proxy the client is the entry the proxy appended (right-most), not a forgeable left one."""
    await same_minute()
    async with app_with(resources, auth_fail_limit_per_min=2) as (direct,):
        statuses = [
            (await direct.get("/v1/zones", headers={"X-Forwarded-For": f"10.0.0.{n}"})).status_code
            for n in range(3)
        ]
        assert statuses == [401, 401, 429]
    async with app_with(resources, peers=("127.0.0.3",), auth_fail_limit_per_min=2, trust_proxy=True) as (
        proxied,
    ):
        statuses = [
            (
                await proxied.get("/v1/zones", headers={"X-Forwarded-For": f"198.51.100.7, 10.0.1.{n}"})
            ).status_code
            for n in range(3)
        ]
        assert statuses == [401, 401, 401]
        forged = [
            (await proxied.get("/v1/zones", headers={"X-Forwarded-For": f"10.9.9.{n}, 10.0.2.9"})).status_code
            for n in range(3)
        ]
        assert forged == [401, 401, 429]


async def test_forwarded_for_takes_the_configured_number_of_trusted_hops() -> None:
    """With two proxies the client is the second entry from the right; fewer entries fall back left."""
    assert forwarded_client("6.6.6.6, 203.0.113.5, 10.0.0.2", 2) == "203.0.113.5"
    assert forwarded_client("6.6.6.6, 203.0.113.5", 1) == "203.0.113.5"
    assert forwarded_client("203.0.113.5", 2) == "203.0.113.5"
    assert forwarded_client(" , ", 1) is None


async def test_per_token_rate_limit_applies_across_addresses(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources
) -> None:
    """API_V1_RATE_LIMIT_PER_MIN counts per token after auth, wherever the requests come from."""
    other = bearer((await make_token(client, admin))["token"])
    await same_minute()
    async with app_with(resources, peers=("127.0.0.4", "127.0.0.5"), v1_rate_limit_per_min=5) as (one, two):
        assert [(await one.get("/v1/zones", headers=admin)).status_code for _ in range(3)] == [200] * 3
        assert [(await two.get("/v1/zones", headers=admin)).status_code for _ in range(3)] == [200, 200, 429]
        assert (await two.get("/v1/zones", headers=other)).status_code == 200
        assert (await two.get("/v1/zones", headers=other)).status_code == 200
        over_ip = await two.get("/v1/zones", headers=other)
        assert (over_ip.status_code, over_ip.json()["error"]) == (429, "rate_limited")


@pytest.mark.parametrize("param", ["a" * 129, "a%20b", "a%00b", "%C3%A9", "a,b", "a;b"])
async def test_path_param_outside_the_pattern_is_400_invalid_params_after_auth(
    client: httpx.AsyncClient, admin: dict[str, str], param: str
) -> None:
    """Ids outside ^[A-Za-z0-9_.\\-:]{1,128}$ answer 400 invalid_params, but only once authenticated."""
    for path in (f"/v1/zones/{param}", f"/v1/zones/{param}/dcr-status"):
        assert (await client.get(path)).status_code == 401
        response = await client.get(path, headers=admin)
        assert (response.status_code, response.json()["error"]) == (400, "invalid_params"), path
    patched = await client.patch(f"/v1/zones/{param}", json={"name": "x"}, headers=admin)
    assert (patched.status_code, patched.json()["error"]) == (400, "invalid_params")


async def test_path_param_of_128_allowed_characters_reaches_the_handler(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A 128-character id of allowed characters is looked up (404 zone_not_found)."""
    response = await client.get("/v1/zones/" + "a.b_c-d:" * 16, headers=admin)
    assert (response.status_code, response.json()["error"]) == (404, "zone_not_found")


async def test_last_used_at_is_set_after_a_request(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources
) -> None:
    """A successful request stamps the token's last_used_at (in the background)."""
    token = await make_token(client, admin, capability="read")
    listed = {t["id"]: t for t in (await client.get("/v1/admin-tokens", headers=admin)).json()}
    assert listed[token["id"]]["last_used_at"] is None
    await client.get(f"/v1/zones/{uuid.uuid4()}", headers=bearer(token["token"]))
    await settle(resources)
    async with resources.engine.connect() as conn:
        query = text("SELECT last_used_at FROM admin_tokens WHERE id = :id")
        assert (await conn.execute(query, {"id": token["id"]})).scalar_one() is not None
    listed = {t["id"]: t for t in (await client.get("/v1/admin-tokens", headers=admin)).json()}
    assert listed[token["id"]]["last_used_at"] is not None


async def test_authentication_comes_before_body_validation(client: httpx.AsyncClient) -> None:
    """Without a token a malformed body still answers 401, so bodies tell nothing to strangers."""
    response = await client.post("/v1/zones", content=b'{"name": 1, "dcr_enabled": "true"}')
    assert (response.status_code, response.json()["error"]) == (401, "invalid_admin_token")
