"""No secret reaches a log, and an API request's log line names its request, zone and actor.

Three processes start at debug level; the API is given secrets through the API itself (tokens, a
client secret, a provider secret) as well as the environment's. tests/log_scan.py then checks every
log of the session for every secret at its end; these tests also check their own logs at once.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import recreate_database
from tests.integration.api_helpers import AUTHORIZATION_CODE_CONFIG, bearer
from tests.log_scan import leaks
from tests.support import (
    ADMIN_TOKEN,
    SUITE_SECRETS,
    Servers,
    Service,
    remember_secret,
    service_env,
    start_service,
    wait_ready,
)

pytestmark = pytest.mark.e2e
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def _create(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(path, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _make_api_secrets(api: Service, admin_token: str) -> None:
    """A zone, a token, a managed application (client secret) and a provider holding a secret."""
    async with httpx.AsyncClient(base_url=api.url, headers=bearer(admin_token), timeout=30) as http:
        zone = await _create(http, "/v1/zones", {"name": "Secrets"})
        base = f"/v1/zones/{zone['id']}"
        token = await _create(http, "/v1/admin-tokens", {"name": "t", "scope": "zone", "zone_id": zone["id"]})
        remember_secret("admin token made through the API", token["token"])
        app = await _create(http, f"{base}/applications", {"name": "A", "registration_method": "managed"})
        remember_secret("client secret", app["client_secret"])
        provider_secret = remember_secret("provider secret", "ps-" + secrets.token_urlsafe(24))
        config = {**AUTHORIZATION_CODE_CONFIG, "client_secret": provider_secret}
        body = {"name": "P", "kind": "oauth2_authorization_code", "config_json": config}
        await _create(http, f"{base}/providers", body)
        refused = await http.get(f"{base}/applications", headers=bearer(token["token"] + "x"))
        assert refused.status_code == 401  # a wrong token is not logged either


async def test_processes_started_at_debug_level_log_no_secret(servers: Servers, logdir: Path) -> None:
    """Admin tokens, KEKs, signing keys, metrics bearer, database password, client and provider
    secrets made through the API: none appears in any of the three processes' logs."""
    url = await recreate_database(servers, "e2e_secrets")
    password = remember_secret("database password", "db-pw-" + secrets.token_hex(8))
    with_password = url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@", 1)
    assert password in with_password  # the embedded server trusts local users: any password works
    admin_token = remember_secret("admin token", "cat_secret_" + secrets.token_urlsafe(24))
    zone_kek = remember_secret("ZONE_KEK", secrets.token_hex(32))
    bearer_value = remember_secret("METRICS_BEARER", "bearer-" + secrets.token_hex(8))
    env = service_env(
        with_password,
        servers.redis_url,
        LOG_LEVEL="debug",
        CARACAL_ADMIN_TOKEN=admin_token,
        ZONE_KEK=zone_kek,
        METRICS_BEARER=bearer_value,
    )
    api = start_service("api", env, logdir, tag="-secrets")
    services = [api]
    try:
        await asyncio.to_thread(wait_ready, api)
        await _make_api_secrets(api, admin_token)
        services += [start_service(kind, env, logdir, tag="-secrets") for kind in ("dispatcher", "reaper")]
        for worker in services[1:]:
            await asyncio.to_thread(worker.wait_logged, f"{worker.name}: poll loop started")
    finally:
        for service in services:
            service.stop()
    for service in services:  # every line is one JSON event, uvicorn's own included
        lines = service.raw_log().splitlines()
        assert len(service.events()) == len(lines), service.raw_log()[-3000:]
    assert any(event["level"] == "debug" for service in services for event in service.events())
    assert any(event["logger"] == "uvicorn.error" for event in api.events())
    assert leaks([service.log_path for service in services], SUITE_SECRETS) == []


async def test_an_api_request_logs_one_json_line_with_its_request_zone_and_actor_ids(
    servers: Servers, logdir: Path
) -> None:
    """The access line of `GET /v1/zones/<z>/applications` carries request_id (the caller's
    X-Request-Id), zone_id, actor_id (the admin token's id), trace_id (the caller's `traceparent`
    trace, joined by the traced API) and the process, as JSON fields."""
    env = service_env(
        await recreate_database(servers, "e2e_log_fields"), servers.redis_url, OTEL_TRACES_EXPORTER="console"
    )
    api = start_service("api", env, logdir, tag="-fields")
    try:
        await asyncio.to_thread(wait_ready, api)
        async with httpx.AsyncClient(base_url=api.url, headers=bearer(ADMIN_TOKEN), timeout=30) as http:
            zone = await _create(http, "/v1/zones", {"name": "Logged"})
            me = await _create(http, "/v1/admin-tokens", {"name": "me", "scope": "global"})
            headers = {**bearer(me["token"]), "X-Request-Id": "req-logged-7", "traceparent": TRACEPARENT}
            remember_secret("admin token made through the API", me["token"])
            response = await http.get(f"/v1/zones/{zone['id']}/applications", headers=headers)
            assert response.status_code == 200, response.text
        await asyncio.to_thread(api.wait_logged, "GET /v1/zones/{zone_id}/applications 200")
    finally:
        api.stop()
    [line] = [event for event in api.events() if event.get("request_id") == "req-logged-7"]
    assert (line["zone_id"], line["actor_id"], line["process"]) == (zone["id"], me["id"], "api")
    assert (line["logger"], line["level"]) == ("caracal.api.access", "info")
    assert line["trace_id"] == TRACEPARENT.split("-")[1]
    assert me["token"] not in api.raw_log()


def test_the_scanner_finds_a_secret_in_a_log(tmp_path: Path) -> None:
    """The session-end scan can fail: a log holding a secret (plain, or JSON-escaped) is named."""
    clean, dirty, escaped = tmp_path / "clean.log", tmp_path / "dirty.log", tmp_path / "escaped.log"
    clean.write_text('{"message": "nothing to see"}\n')
    dirty.write_text('{"message": "token cat_abc123 used"}\n')
    escaped.write_text('{"message": "key s\\\\q"}\n')  # the secret s\q, JSON-escaped
    found = leaks([clean, dirty, escaped, tmp_path / "missing.log"], {"t": "cat_abc123", "q": "s\\q"})
    assert found == ["dirty.log: t", "escaped.log: q"]
