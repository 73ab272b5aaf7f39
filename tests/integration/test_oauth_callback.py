"""GET …/provider-grants/oauth/callback (CONTRACT.md §4.8), against a real token endpoint on loopback."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal_api.resources import Resources
from tests.integration.api_helpers import app_with, make_provider, make_resource, make_zone, outbox, settle
from tests.integration.test_api_provider_grants import World, grant_rows, oauth_world, opened
from tests.support import eventually
from tests.token_endpoint import HOST, Reply, TokenEndpoint, token_endpoint

STATE_KEY = "api:provider_oauth_state:"
CLIENT_SECRET = "cs-test-secret"  # AUTHORIZATION_CODE_CONFIG's


@dataclass
class Flow:
    http: httpx.AsyncClient
    admin: dict[str, str]
    world: World
    endpoint: TokenEndpoint

    async def authorize(self, **changes: Any) -> dict[str, Any]:
        body = {
            k: v for k, v in self.world.body(**changes).items() if k not in ("access_token", "refresh_token")
        }
        response = await self.http.post(f"{self.world.base}/oauth/authorize", json=body, headers=self.admin)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def callback(self, zone_id: str | None = None, headers: dict[str, str] | None = None,
                       **query: str) -> httpx.Response:  # fmt: skip
        url = f"/v1/zones/{zone_id or self.world.zone_id}/provider-grants/oauth/callback"
        return await self.http.get(url, params=query, headers=headers or {})


@pytest_asyncio.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[TokenEndpoint]:
    async with token_endpoint(tmp_path) as found:
        found.grant(access_token="at-Vb77-secret", refresh_token="rt-Pn05-secret", expires_in=3600)
        yield found


async def flow_for(
    client: httpx.AsyncClient, admin: dict[str, str], endpoint: TokenEndpoint, http: httpx.AsyncClient
) -> Flow:
    world = await oauth_world(client, admin, token_endpoint=endpoint.url, allowed_token_hosts=[HOST])
    return Flow(http, admin, world, endpoint)


@pytest_asyncio.fixture
async def loopback_app(resources: Resources, endpoint: TokenEndpoint) -> AsyncIterator[httpx.AsyncClient]:
    """The app allowed to reach the loopback token endpoint and trusting its certificate."""
    async with app_with(
        resources,
        oauth_allow_loopback_token_hosts=True,
        oauth_token_ca_file=endpoint.ca_file,
        oauth_token_timeout_ms=1000,
    ) as (http,):
        yield http


@pytest_asyncio.fixture
async def flow(
    client: httpx.AsyncClient, admin: dict[str, str], endpoint: TokenEndpoint, loopback_app: httpx.AsyncClient
) -> Flow:
    return await flow_for(client, admin, endpoint, loopback_app)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_callback_exchanges_the_code_and_stores_the_grant_without_a_token(
    flow: Flow, engine: AsyncEngine, resources: Resources
) -> None:
    answer = await flow.authorize()
    response = await flow.callback(state=answer["state"], code="code-123")
    assert response.status_code == 201, response.text
    grant = response.json()
    assert (grant["zone_id"], grant["user_id"], grant["status"]) == (flow.world.zone_id, "user-1", "active")
    expires = dt.datetime.fromisoformat(grant["expires_at"])
    assert abs((expires - dt.datetime.now(dt.UTC)).total_seconds() - 3600) < 10
    [sent] = flow.endpoint.received
    challenge = dict(parse_qsl(urlsplit(answer["authorization_url"]).query))["code_challenge"]
    assert b64url(hashlib.sha256(sent.form["code_verifier"].encode()).digest()) == challenge
    assert {k: v for k, v in sent.form.items() if k != "code_verifier"} == {
        "grant_type": "authorization_code",
        "code": "code-123",
        "redirect_uri": "https://caracal.example.com/callback",
        "client_id": "caracal-client",
    }
    assert base64.b64decode(sent.headers["authorization"][6:]).decode() == f"caracal-client:{CLIENT_SECRET}"
    [row] = await grant_rows(engine)
    assert (opened(row.access_token_ct), opened(row.refresh_token_ct)) == ("at-Vb77-secret", "rt-Pn05-secret")
    events = [p["event"] for s, p in await outbox(engine) if s == "caracal.changes" and "grant" in p["event"]]
    assert events == ["provider_grant.created"]
    await settle(resources)
    async with engine.connect() as conn:
        audit = (
            await conn.execute(
                text("SELECT * FROM admin_audit_events WHERE method = 'GET' AND status_code = 201")
            )
        ).one()
    assert (audit.actor_id, audit.zone_id, audit.entity_type) == (None, flow.world.zone_id, "provider-grants")


async def test_a_state_is_spent_once(flow: Flow, engine: AsyncEngine) -> None:
    state = (await flow.authorize())["state"]
    assert (await flow.callback(state=state, code="c")).status_code == 201
    again = await flow.callback(state=state, code="c")
    assert (again.status_code, again.json()["error"]) == (400, "oauth_state_expired")
    assert len(flow.endpoint.received) == 1 and len(await grant_rows(engine)) == 1


async def test_a_second_flow_for_the_tuple_overwrites_the_grant(flow: Flow, engine: AsyncEngine) -> None:
    first = (await flow.callback(state=(await flow.authorize())["state"], code="c1")).json()
    flow.endpoint.grant(access_token="at-second")
    second = (
        await flow.callback(state=(await flow.authorize(scopes=["read", "write"]))["state"], code="c2")
    ).json()
    assert (
        second["id"] == first["id"] and second["scopes"] == ["read", "write"] and second["expires_at"] is None
    )
    [row] = await grant_rows(engine)
    assert (opened(row.access_token_ct), row.refresh_token_ct, row.refresh_token_version) == (
        "at-second",
        None,
        1,
    )


async def test_a_browser_gets_an_html_page(flow: Flow) -> None:
    page = await flow.callback(
        headers={"Accept": "text/html"}, state=(await flow.authorize())["state"], code="c"
    )
    assert page.status_code == 201 and page.headers["content-type"].startswith("text/html")
    assert "Authorization complete" in page.text
    both = {"Accept": "text/html, application/json"}
    answer = await flow.callback(headers=both, state=(await flow.authorize())["state"], code="c")
    assert answer.headers["content-type"].startswith("application/json")
    failed = await flow.callback(headers={"Accept": "text/html"}, state="s" * 43, code="<script>")
    assert (
        failed.status_code == 400 and "oauth_state_expired" in failed.text and "<script>" not in failed.text
    )


async def test_head_answers_without_spending_the_state(flow: Flow, redis: Redis) -> None:
    state = (await flow.authorize())["state"]
    url = f"/v1/zones/{flow.world.zone_id}/provider-grants/oauth/callback"
    response = await flow.http.head(url, params={"state": state, "code": "c"})
    assert response.status_code == 200
    assert await redis.exists(STATE_KEY + state) and flow.endpoint.received == []


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({}, "invalid_oauth_callback"),
        ({"state": "s" * 31, "code": "c"}, "invalid_oauth_callback"),
        ({"state": "s" * 257, "code": "c"}, "invalid_oauth_callback"),
        ({"state": "s" * 43, "code": "c"}, "oauth_state_expired"),
    ],
)
async def test_a_bad_or_unknown_state_is_refused(flow: Flow, query: dict[str, str], code: str) -> None:
    response = await flow.callback(**query)
    assert (response.status_code, response.json()["error"]) == (400, code), response.text


async def test_a_stored_value_that_is_not_a_state_record_is_invalid(flow: Flow, redis: Redis) -> None:
    await redis.set(STATE_KEY + "g" * 43, b'{"zone_id": 7}')
    response = await flow.callback(state="g" * 43, code="c")
    assert (response.status_code, response.json()["error"]) == (400, "oauth_state_invalid")


async def test_another_zones_state_is_a_mismatch_and_is_spent(
    flow: Flow, client: httpx.AsyncClient, admin: dict[str, str], redis: Redis, engine: AsyncEngine
) -> None:
    other_zone = (await make_zone(client, admin, name="Other"))["id"]
    state = (await flow.authorize())["state"]
    response = await flow.callback(zone_id=other_zone, state=state, code="c")
    assert (response.status_code, response.json()["error"]) == (400, "oauth_state_mismatch")
    assert not await redis.exists(STATE_KEY + state)
    assert flow.endpoint.received == [] and await grant_rows(engine) == []


async def test_the_providers_refusal_and_a_missing_code_are_reported(flow: Flow, redis: Redis) -> None:
    state = (await flow.authorize())["state"]
    denied = await flow.callback(state=state, error="access_denied", error_description="user said no")
    assert (denied.status_code, denied.json()["error"]) == (400, "provider_oauth_denied")
    assert denied.json()["detail"] == "access_denied: user said no"
    no_code = await flow.callback(state=(await flow.authorize())["state"])
    assert (no_code.status_code, no_code.json()["error"]) == (400, "authorization_code_required")
    assert flow.endpoint.received == []


async def planted_state(redis: Redis, world: World, **changes: Any) -> str:
    """A state record as authorize writes it, for a grant the rows no longer allow."""
    record = {
        "zone_id": world.zone_id,
        "user_id": "user-1",
        "resource_id": world.resource_id,
        "provider_id": world.provider_id,
        "scopes": ["read"],
        "code_verifier": "v" * 43,
        **changes,
    }
    state = "p" * 40 + str(len(await redis.keys(STATE_KEY + "*")))
    await redis.set(STATE_KEY + state, json.dumps(record), ex=600)
    return state


async def test_the_grant_checks_run_again_at_the_callback_in_order(
    flow: Flow, client: httpx.AsyncClient, admin: dict[str, str], redis: Redis, engine: AsyncEngine
) -> None:
    world = flow.world
    other_provider = await make_provider(client, admin, world.zone_id)
    other_resource = await make_resource(client, admin, world.zone_id)
    cases = [
        ({"provider_id": "nope", "resource_id": "nope"}, 404, "provider_not_found"),
        ({"provider_id": other_provider, "resource_id": "nope"}, 400, "provider_grant_unsupported"),
        ({"resource_id": "nope", "scopes": ["admin"]}, 404, "resource_not_found"),
        ({"resource_id": other_resource, "scopes": ["admin"]}, 400, "provider_resource_mismatch"),
        ({"scopes": ["admin"]}, 403, "grant_scopes_exceed_resource"),
    ]
    for change, status, code in cases:
        response = await flow.callback(state=await planted_state(redis, world, **change), code="c")
        assert (response.status_code, response.json()["error"]) == (status, code), (change, response.text)
    assert flow.endpoint.received == [] and await grant_rows(engine) == []


async def test_a_provider_config_unfit_for_the_exchange_is_refused(
    flow: Flow, redis: Redis, engine: AsyncEngine
) -> None:
    for update, code in [
        ("config_json - 'token_endpoint'", "invalid_provider_config"),
        ("config_json || '{\"client_auth_method\": \"private_key_jwt\"}'", "invalid_provider_config"),
        ("config_json || '{\"client_auth_method\": \"client_secret_post\", \"allowed_token_hosts\": "
         "[\"idp.example.com\"]}'", "provider_token_endpoint_not_allowed"),
    ]:  # fmt: skip
        async with engine.begin() as conn:
            await conn.execute(text(f"UPDATE providers SET config_json = {update} WHERE id = :id"),
                               {"id": flow.world.provider_id})  # fmt: skip
        response = await flow.callback(state=(await flow.authorize())["state"], code="c")
        assert (response.status_code, response.json()["error"]) == (400, code), (update, response.text)
        restore = {"token_endpoint": flow.endpoint.url, "client_auth_method": "client_secret_basic"}
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE providers SET config_json = config_json || CAST(:patch AS jsonb)"),
                {"patch": json.dumps({**restore, "allowed_token_hosts": [HOST]})},
            )
    assert flow.endpoint.received == []


async def test_without_the_test_allowance_a_loopback_token_endpoint_is_not_allowed(
    client: httpx.AsyncClient, admin: dict[str, str], endpoint: TokenEndpoint, resources: Resources
) -> None:
    async with app_with(resources, oauth_token_ca_file=endpoint.ca_file) as (http,):
        flow = await flow_for(client, admin, endpoint, http)
        response = await flow.callback(state=(await flow.authorize())["state"], code="c")
    assert (response.status_code, response.json()["error"]) == (400, "provider_token_endpoint_not_allowed")
    assert "127.0.0.1" in response.json()["detail"] and endpoint.received == []


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(status=400, body=b'{"error":"invalid_grant"}'), "provider_token_exchange_failed"),
        (Reply(status=500, body=b"oops", content_type="text/plain"), "provider_token_exchange_failed"),
        (Reply(body=b'{"access_token":"x"}', stall_s=3), "provider_token_exchange_failed"),
        (Reply(body=b"not json"), "provider_token_response_invalid"),
        (Reply(body=b'{"token_type":"Bearer"}'), "provider_token_response_invalid"),
        (Reply(body=b'{"access_token":"' + b"x" * 70_000 + b'"}'), "provider_token_response_invalid"),
    ],
)
async def test_a_failing_token_endpoint_is_502_and_stores_nothing(
    flow: Flow, engine: AsyncEngine, reply: Reply, code: str
) -> None:
    flow.endpoint.reply = reply
    response = await flow.callback(state=(await flow.authorize())["state"], code="c")
    assert (response.status_code, response.json()["error"]) == (502, code), response.text
    assert await grant_rows(engine) == []


async def test_no_database_connection_is_held_during_the_exchange(
    flow: Flow, engine: AsyncEngine, resources: Resources
) -> None:
    flow.endpoint.reply = Reply(body=b'{"access_token":"late"}', stall_s=0.5)
    state = (await flow.authorize())["state"]
    await settle(resources)
    pending = asyncio.create_task(flow.callback(state=state, code="c"))
    await eventually(lambda: bool(flow.endpoint.received), "the token endpoint got the request")
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert (await pending).status_code == 201


async def test_no_response_or_log_line_holds_a_token_or_the_client_secret(
    flow: Flow, resources: Resources, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts = [(await flow.callback(state=(await flow.authorize())["state"], code="c")).text]
    flow.endpoint.reply = Reply(status=400, body=b'{"error":"invalid_grant","access_token":"at-Vb77-secret"}')
    texts.append((await flow.callback(state=(await flow.authorize())["state"], code="c")).text)
    await settle(resources)
    for shown in [*texts, caplog.text]:
        assert "at-Vb77" not in shown and "rt-Pn05" not in shown and CLIENT_SECRET not in shown
