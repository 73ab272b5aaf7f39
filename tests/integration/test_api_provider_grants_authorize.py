"""POST …/provider-grants/oauth/authorize (CONTRACT.md §4.8): the URL, the state in Redis, errors in order."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal_api.resources import Resources
from tests.app_pool import bound_app
from tests.integration.api_helpers import make_provider, make_resource
from tests.integration.test_api_provider_grants import World, oauth_world

STATE_KEY = "api:provider_oauth_state:"


@pytest_asyncio.fixture
async def world(client: httpx.AsyncClient, admin: dict[str, str]) -> World:
    return await oauth_world(
        client,
        admin,
        authorization_endpoint="https://idp.example.com/authorize?tenant=t1",
        authorization_params={"prompt": "consent", "access_type": "offline"},
        scopes=["openid", "email"],
    )


def authorize_body(world: World, **changes: Any) -> dict[str, Any]:
    body = world.body(**changes)
    return {k: body[k] for k in ("user_id", "resource_id", "provider_id", "scopes")}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_authorize_answers_the_url_and_keeps_the_state_ten_minutes(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, redis: Redis
) -> None:
    response = await client.post(f"{world.base}/oauth/authorize", json=authorize_body(world), headers=admin)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"authorization_url", "state", "expires_at"}
    state = answer["state"]
    assert len(base64.urlsafe_b64decode(state + "=")) == 32
    expires = dt.datetime.fromisoformat(answer["expires_at"])
    assert abs((expires - dt.datetime.now(dt.UTC)).total_seconds() - 600) < 5
    stored = json.loads(await redis.get(STATE_KEY + state))
    assert 590 <= await redis.ttl(STATE_KEY + state) <= 600
    verifier = stored.pop("code_verifier")
    assert len(base64.urlsafe_b64decode(verifier + "=")) == 32
    assert stored == {
        "zone_id": world.zone_id,
        "user_id": "user-1",
        "resource_id": world.resource_id,
        "provider_id": world.provider_id,
        "scopes": ["read"],
    }
    url = urlsplit(answer["authorization_url"])
    assert (url.scheme, url.netloc, url.path) == ("https", "idp.example.com", "/authorize")
    assert parse_qsl(url.query) == [
        ("tenant", "t1"),
        ("prompt", "consent"),
        ("access_type", "offline"),
        ("response_type", "code"),
        ("client_id", "caracal-client"),
        ("redirect_uri", "https://caracal.example.com/callback"),
        ("state", state),
        ("scope", "openid email"),
        ("code_challenge", b64url(hashlib.sha256(verifier.encode()).digest())),
        ("code_challenge_method", "S256"),
    ]


async def test_every_authorize_gets_its_own_state_and_verifier(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, redis: Redis
) -> None:
    states = [
        (
            await client.post(f"{world.base}/oauth/authorize", json=authorize_body(world), headers=admin)
        ).json()["state"]
        for _ in range(3)
    ]
    verifiers = {json.loads(await redis.get(STATE_KEY + s))["code_verifier"] for s in states}
    assert len(set(states)) == 3 and len(verifiers) == 3


async def test_no_scope_parameter_when_the_provider_lists_none(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    world = await oauth_world(client, admin)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE providers SET config_json = config_json - 'scopes'"))
    response = await client.post(f"{world.base}/oauth/authorize", json=authorize_body(world), headers=admin)
    assert "scope" not in dict(parse_qsl(urlsplit(response.json()["authorization_url"]).query))


async def test_authorize_errors_come_in_the_contracts_order(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, redis: Redis
) -> None:
    other_provider = await make_provider(client, admin, world.zone_id)
    other_resource = await make_resource(client, admin, world.zone_id)
    path = "/oauth/authorize"
    cases = [
        (f"/v1/zones/nope/provider-grants{path}", {"scopes": []}, 404, "zone_not_found"),
        (world.base + path, {"scopes": [], "provider_id": "nope"}, 400, "invalid_provider_oauth_authorize"),
        (world.base + path, {"provider_id": "nope", "resource_id": "nope"}, 404, "provider_not_found"),
        (
            world.base + path,
            {"provider_id": other_provider, "resource_id": "no"},
            400,
            "provider_grant_unsupported",
        ),
        (world.base + path, {"resource_id": "nope", "scopes": ["admin"]}, 404, "resource_not_found"),
        (
            world.base + path,
            {"resource_id": other_resource, "scopes": ["x"]},
            400,
            "provider_resource_mismatch",
        ),
        (world.base + path, {"scopes": ["admin"]}, 403, "grant_scopes_exceed_resource"),
    ]
    for url, change, status, code in cases:
        response = await client.post(url, json=authorize_body(world, **change), headers=admin)
        assert (response.status_code, response.json()["error"]) == (status, code), (change, response.text)
    assert await redis.keys(STATE_KEY + "*") == []


async def test_a_provider_config_without_its_endpoints_is_refused_in_order(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, engine: AsyncEngine, redis: Redis
) -> None:
    """Rows another version wrote: an empty redirect_uri or client_id, then a non-https endpoint."""
    url = f"{world.base}/oauth/authorize"
    for update, code in [
        ("config_json - 'redirect_uri'", "invalid_provider_config"),
        ("config_json || '{\"client_id\": \"\"}'", "invalid_provider_config"),
        ("config_json || '{\"authorization_endpoint\": \"\"}'", "invalid_provider_config"),
        ("config_json || '{\"authorization_endpoint\": \"http://idp.example.com/a\", \"client_id\": \"c\", "
         "\"redirect_uri\": \"https://x.example/cb\"}'", "provider_authorization_endpoint_invalid"),
        ("config_json || '{\"authorization_endpoint\": \"not a url\"}'",
         "provider_authorization_endpoint_invalid"),
    ]:  # fmt: skip
        async with engine.begin() as conn:
            await conn.execute(text(f"UPDATE providers SET config_json = {update}"))
        response = await client.post(url, json=authorize_body(world), headers=admin)
        assert (response.status_code, response.json()["error"]) == (400, code), (update, response.text)
        assert response.json()["detail"]
    assert await redis.keys(STATE_KEY + "*") == []


async def test_authorize_is_503_when_redis_cannot_keep_the_state(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, resources: Resources
) -> None:
    """The state must be stored to be checked later: no fail-open here."""
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2)
    res = Resources(settings=resources.settings, engine=resources.engine, redis=dead)
    try:
        with bound_app(res) as app:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://caracal.test") as http:
                response = await http.post(
                    f"{world.base}/oauth/authorize", json=authorize_body(world), headers=admin
                )
    finally:
        await res.settled()
        await res.stop()
        await dead.aclose()
    assert (response.status_code, response.json()["error"]) == (503, "redis_unreachable"), response.text
