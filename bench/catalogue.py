"""Catalogue routes under wrk beside raw asyncpg baselines, and application creation beside raw Argon2id.

GET one resource (with its gateway binding), a 200-grant page with its joined names, POST grant,
and application create per second. Creating an application hashes its client secret with Argon2id
(64 MiB, t=3, p=2: the format the STS verifies), about 0.1 s of CPU per hash, so that route is bound
by the hash, not by the request path: its baseline is the same hash run raw on the same cores.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from typing import Any

import asyncpg
import httpx
from argon2.low_level import ARGON2_VERSION, Type, hash_secret_raw

from bench.api import (
    CONNECTIONS,
    LIST_LIMIT,
    ApiServer,
    Load,
    baseline,
    create_zone,
    drive,
    measure_route,
    running_api,
)
from bench.common import BenchEnv, BenchError, ratio, say

CREATE_CALLERS = 8  # concurrent application creations: enough to keep every hashing slot busy
CREATE_SECONDS = 6.0
HASH_THREADS = os.cpu_count() or 2
SELECT_RESOURCE = """
SELECT r.id, r.zone_id, r.name, r.identifier, r.upstream_url, r.scopes, r.credential_provider_id,
       b.application_id, r.created_at, r.updated_at
  FROM resources r LEFT JOIN gateway_resource_bindings b
    ON b.zone_id = r.zone_id AND b.resource_identifier = r.identifier
 WHERE r.zone_id = $1 AND r.id = $2 AND r.archived_at IS NULL
"""
SELECT_GRANT_PAGE = """
SELECT g.id, g.zone_id, g.application_id, g.user_id, g.resource_id, g.scopes, g.status, g.created_at,
       r.credential_provider_id, a.name, r.name, p.name, p.provider_kind
  FROM delegated_grants g
  LEFT JOIN applications a ON a.zone_id = g.zone_id AND a.id = g.application_id
  LEFT JOIN resources r ON r.zone_id = g.zone_id AND r.id = g.resource_id
  LEFT JOIN providers p ON p.zone_id = r.zone_id AND p.id = r.credential_provider_id
 WHERE g.zone_id = $1 ORDER BY g.created_at DESC, g.id DESC LIMIT $2
"""
INSERT_GRANT = """
INSERT INTO delegated_grants (id, zone_id, application_id, user_id, resource_id, scopes)
VALUES ($1, $2, $3, $1, $4, '{read}')
"""
INSERT_EVENT = "INSERT INTO event_outbox (id, stream_name, payload_json) VALUES ($1, 'caracal.changes', $2)"


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> str:
    response = await client.post(path, json=body)
    if response.status_code != 201:
        raise BenchError(f"POST {path} answered {response.status_code}: {response.text[:500]}")
    created: str = response.json()["id"]
    return created


async def _catalogue(server: ApiServer) -> dict[str, str]:
    """A zone with a provider, a gateway application and a resource bound to it."""
    zone_id = await create_zone(server, f"bench-catalogue-{secrets.token_hex(4)}")
    base = f"/v1/zones/{zone_id}"
    async with httpx.AsyncClient(base_url=server.url, headers=server.auth, timeout=30.0) as client:
        provider_id = await _post(
            client,
            f"{base}/providers",
            {"name": "bench", "kind": "api_key", "config_json": {"header_name": "x-api-key", "api_key": "k"}},
        )
        application_id = await _post(
            client, f"{base}/applications", {"name": "gateway", "registration_method": "managed"}
        )
        resource_id = await _post(
            client,
            f"{base}/resources",
            {
                "name": "bench",
                "upstream_url": "https://upstream.example",
                "scopes": ["read", "write"],
                "credential_provider_id": provider_id,
                "gateway_application_id": application_id,
            },
        )
    return {"zone": zone_id, "application": application_id, "resource": resource_id}


def _lines(name: str, api: Load, baseline_name: str, base: Load) -> list[str]:
    return [
        f"{name}: {api.describe()}",
        f"  {baseline_name}: {base.describe()}",
        f"  ratio {ratio(api.rate, base.rate)} (no goal set; compare run to run)",
    ]


async def _get_resource(bench: BenchEnv, server: ApiServer, ids: dict[str, str]) -> list[str]:
    path = f"/v1/zones/{ids['zone']}/resources/{ids['resource']}"
    api = await measure_route(bench, server, "GET one resource", path)
    label = "raw SELECT of the resource and its binding"
    base = await baseline(
        bench, label, lambda pool, _n: pool.fetchrow(SELECT_RESOURCE, ids["zone"], ids["resource"])
    )
    return _lines("GET /v1/zones/{z}/resources/{id}", api, label, base)


def _insert_grant(ids: dict[str, str], tag: str) -> Any:
    event = f'{{"event":"grant.created","zone_id":"{ids["zone"]}"}}'

    async def call(pool: asyncpg.Pool, n: int) -> None:
        grant_id = f"bench-{tag}-{n}"
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(INSERT_GRANT, grant_id, ids["zone"], ids["application"], ids["resource"])
            await conn.execute(INSERT_EVENT, grant_id, event)

    return call


async def _post_grant(bench: BenchEnv, server: ApiServer, ids: dict[str, str]) -> list[str]:
    path = f"/v1/zones/{ids['zone']}/grants"
    script_args = (ids["zone"], ids["application"], ids["resource"])
    api = await measure_route(bench, server, "POST grant", path, "post_grants", script_args=script_args)
    label = "B_tx raw BEGIN; INSERT grant; INSERT outbox; COMMIT"
    base = await baseline(bench, label, _insert_grant(ids, secrets.token_hex(4)))
    return _lines("POST /v1/zones/{z}/grants", api, label, base)


async def _grant_page(bench: BenchEnv, server: ApiServer, ids: dict[str, str]) -> list[str]:
    path = f"/v1/zones/{ids['zone']}/grants?limit={LIST_LIMIT}"
    api = await measure_route(bench, server, f"GET a {LIST_LIMIT}-grant page", path)
    label = f"raw fetch of the same {LIST_LIMIT} rows and joined names"
    base = await baseline(
        bench, label, lambda pool, _n: pool.fetch(SELECT_GRANT_PAGE, ids["zone"], LIST_LIMIT)
    )
    return _lines(f"GET /v1/zones/{{z}}/grants?limit={LIST_LIMIT}", api, label, base)


async def _application_creates(server: ApiServer, zone_id: str) -> Load:
    path = f"/v1/zones/{zone_id}/applications"
    async with httpx.AsyncClient(base_url=server.url, headers=server.auth, timeout=30.0) as client:

        async def create(n: int) -> None:
            await _post(client, path, {"name": f"app-{n}", "registration_method": "managed"})

        return await drive(CREATE_CALLERS, CREATE_SECONDS, create)


def _hash_once(_n: int) -> bytes:
    return hash_secret_raw(
        secrets.token_bytes(32), secrets.token_bytes(16), 3, 65536, 2, 32, Type.ID, ARGON2_VERSION
    )


async def _raw_hashes() -> Load:
    """The hash alone: HASH_THREADS threads hashing back to back (argon2 releases the GIL)."""
    loop = asyncio.get_running_loop()
    return await drive(HASH_THREADS, CREATE_SECONDS, lambda n: loop.run_in_executor(None, _hash_once, n))


async def _create_applications(server: ApiServer, zone_id: str) -> list[str]:
    say(f"application create: {CREATE_CALLERS} callers for {CREATE_SECONDS:g} s (Argon2id-bound)")
    api = await _application_creates(server, zone_id)
    say(f"application create: {api.describe()}")
    say(f"raw Argon2id: {HASH_THREADS} threads for {CREATE_SECONDS:g} s")
    started = time.perf_counter()
    base = await _raw_hashes()
    say(f"raw Argon2id: {base.describe()} ({time.perf_counter() - started:.1f} s)")
    return _lines("POST /v1/zones/{z}/applications (one Argon2id each)", api, "raw Argon2id hashes", base)


async def run(bench: BenchEnv) -> list[str]:
    say(f"catalogue: routes under wrk at {CONNECTIONS} connections, each beside its raw baseline")
    async with running_api(bench) as server:
        ids = await _catalogue(server)
        lines = await _get_resource(bench, server, ids)
        lines += await _post_grant(bench, server, ids)  # leaves thousands of grants for the page
        lines += await _grant_page(bench, server, ids)
        lines += await _create_applications(server, ids["zone"])
    for line in lines:
        say(line)
    return lines
