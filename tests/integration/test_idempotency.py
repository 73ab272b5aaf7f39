"""Idempotency-Key on /v1 POSTs: a retry gets the first response and writes nothing; the key with
another request is 422; keys are per token; concurrent duplicates mutate once; keys expire in 24 h."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.health_facts import REAPER_JOB_KEYS
from caracal.reaper_stats import job_stats
from caracal.settings import Settings
from caracal_api.resources import Resources
from caracal_reaper.expiry_jobs import IDEMPOTENCY_EXPIRY
from caracal_reaper.jobs import JOBS
from caracal_reaper.runner import Reaper
from tests.app_pool import route_table
from tests.integration.api_helpers import bearer, count_rows, make_token, settle

WRITTEN = ("zones", "event_outbox", "admin_audit_events", "idempotency_keys")


async def counts(engine: AsyncEngine, resources: Resources) -> dict[str, int]:
    await settle(resources)
    return {table: await count_rows(engine, table) for table in WRITTEN}


async def age_key(engine: AsyncEngine, key: str, age: timedelta) -> None:
    """Make a stored key `age` old by the database clock."""
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE idempotency_keys SET created_at = now() - CAST(:age AS interval) WHERE key = :key"),
            {"age": age, "key": key},
        )


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def test_a_retried_create_gets_the_first_response_and_writes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    first = await client.post("/v1/zones", json={"name": "Once"}, headers=keyed(admin, "k-1"))
    assert first.status_code == 201, first.text
    after_first = await counts(engine, resources)
    again = await client.post("/v1/zones", json={"name": "Once"}, headers=keyed(admin, "k-1"))
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await counts(engine, resources) == after_first
    assert after_first == {**after_first, "zones": 1, "admin_audit_events": 1, "idempotency_keys": 1}
    assert after_first["event_outbox"] >= 1


async def test_the_same_key_with_another_body_is_422_and_writes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    assert (await client.post("/v1/zones", json={"name": "A"}, headers=keyed(admin, "k"))).status_code == 201
    before = await counts(engine, resources)
    other = await client.post("/v1/zones", json={"name": "B"}, headers=keyed(admin, "k"))
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    elsewhere = await client.post(
        "/v1/admin-tokens", json={"name": "t", "scope": "global"}, headers=keyed(admin, "k")
    )
    assert elsewhere.status_code == 422  # another path is another request
    after = await counts(engine, resources)
    assert {t: after[t] for t in ("zones", "event_outbox", "idempotency_keys")} == {
        t: before[t] for t in ("zones", "event_outbox", "idempotency_keys")
    }


async def test_another_token_with_the_same_key_makes_its_own_request(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    other = bearer((await make_token(client, admin))["token"])
    mine = await client.post("/v1/zones", json={"name": "Mine"}, headers=keyed(admin, "shared"))
    theirs = await client.post("/v1/zones", json={"name": "Mine"}, headers=keyed(other, "shared"))
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert "idempotent-replayed" not in theirs.headers
    assert await count_rows(engine, "zones") == 2


async def test_concurrent_duplicates_mutate_once_and_all_get_the_first_response(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    base = await counts(engine, resources)
    assert (await client.post("/v1/zones", json={"name": "Alone"}, headers=admin)).status_code == 201
    before = await counts(engine, resources)
    one = {t: before[t] - base[t] for t in WRITTEN}  # what one create writes
    answers = await asyncio.gather(
        *(client.post("/v1/zones", json={"name": "Race"}, headers=keyed(admin, "race")) for _ in range(4))
    )
    assert {(a.status_code, a.content) for a in answers} == {(201, answers[0].content)}
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 3
    after = await counts(engine, resources)
    assert {t: after[t] - before[t] for t in WRITTEN} == {**one, "idempotency_keys": 1}


async def test_a_failed_request_stores_no_key_and_its_retry_runs_again(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    missing = await client.post("/v1/zones/nope/teams", json={"name": "T"}, headers=keyed(admin, "after-404"))
    assert missing.status_code == 404
    assert await count_rows(engine, "idempotency_keys") == 0
    retried = await client.post("/v1/zones/nope/teams", json={"name": "T"}, headers=keyed(admin, "after-404"))
    assert retried.status_code == 404
    assert "idempotent-replayed" not in retried.headers


async def test_a_key_that_is_not_1_to_255_visible_ascii_is_400(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    for bad in ("", "a b", "x" * 256, "tab\there"):
        answer = await client.post("/v1/zones", json={"name": "Z"}, headers=keyed(admin, bad))
        assert answer.status_code == 400, bad
        assert answer.json()["error"] == "invalid_idempotency_key"
    assert await count_rows(engine, "zones") == 0
    ok = await client.post("/v1/zones", json={"name": "Z"}, headers=keyed(admin, "~" * 255))
    assert ok.status_code == 201


async def test_the_stored_body_is_sealed_so_the_database_holds_no_secret(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    created = await client.post(
        "/v1/admin-tokens", json={"name": "t", "scope": "global"}, headers=keyed(admin, "tok")
    )
    secret = created.json()["token"]
    async with engine.connect() as conn:
        body = (await conn.execute(text("SELECT body FROM idempotency_keys"))).scalar_one()
    assert secret.encode() not in body and b"cat_" not in body
    again = await client.post(
        "/v1/admin-tokens", json={"name": "t", "scope": "global"}, headers=keyed(admin, "tok")
    )
    assert again.content == created.content


async def test_an_expired_key_is_a_new_request_and_the_reaper_removes_it(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    engine: AsyncEngine,
    settings: Settings,
    redis: Redis,
) -> None:
    assert IDEMPOTENCY_EXPIRY in JOBS
    first = await client.post("/v1/zones", json={"name": "Old"}, headers=keyed(admin, "old"))
    await client.post("/v1/zones", json={"name": "Kept"}, headers=keyed(admin, "kept"))
    await age_key(engine, "old", timedelta(hours=24, seconds=1))
    later = await client.post("/v1/zones", json={"name": "Old"}, headers=keyed(admin, "old"))
    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in later.headers
    retried = await client.post("/v1/zones", json={"name": "Old"}, headers=keyed(admin, "old"))
    assert retried.content == later.content  # the key now stands for the later request
    await age_key(engine, "old", timedelta(hours=25))
    await Reaper(settings, engine, redis, [IDEMPOTENCY_EXPIRY]).run_due()
    figures = (await job_stats(redis))["idempotency-expiry"]  # what status and /metrics read
    assert (figures["runs"], figures["rows"]) == (1, 1)
    assert REAPER_JOB_KEYS["idempotency-expiry"] == IDEMPOTENCY_EXPIRY.lock_key
    async with engine.connect() as conn:
        left = (await conn.execute(text("SELECT key FROM idempotency_keys"))).scalars().all()
    assert left == ["kept"]


async def test_openapi_documents_the_key_and_422_on_every_post_that_takes_one(resources: Resources) -> None:
    app = route_table(resources)
    for hook in app.on_startup:  # what the served app's start-up does to its document
        hook(app)
    document = app.openapi_schema.to_schema()
    posts = {path: item["post"] for path, item in document["paths"].items() if "post" in item}
    assert len(posts) >= 25
    for path, operation in posts.items():
        names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]
        takes_key = path != "/v1/local/bootstrap"  # no token: nothing to scope a key to
        assert ("Idempotency-Key" in names) == takes_key, path
        assert ("422" in operation["responses"]) or not takes_key, path
