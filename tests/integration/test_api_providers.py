"""Providers over HTTP (CONTRACT.md §4.4): create, read, list, update, archive, with their error codes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.api_helpers import (
    API_KEY_CONFIG,
    AUTHORIZATION_CODE_CONFIG,
    count_rows,
    make_provider,
    make_zone,
    outbox,
)
from tests.support import eventually

PROVIDER_FIELDS = {
    "id",
    "zone_id",
    "name",
    "identifier",
    "kind",
    "config_json",
    "secret_config_keys",
    "created_at",
    "updated_at",
}


async def _post(client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, body: Any) -> httpx.Response:
    return await client.post(f"/v1/zones/{zone_id}/providers", json=body, headers=admin)


async def _zone(client: httpx.AsyncClient, admin: dict[str, str]) -> str:
    return str((await make_zone(client, admin))["id"])


async def test_post_creates_an_api_key_provider_and_answers_its_public_part_only(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """201 with the provider object: the public config, the secret's name, never its value."""
    zone_id = await _zone(client, admin)
    response = await _post(
        client, admin, zone_id, {"name": "Stripe", "kind": "api_key", "config_json": API_KEY_CONFIG}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == PROVIDER_FIELDS
    assert body["zone_id"] == zone_id
    assert (body["name"], body["identifier"], body["kind"]) == ("Stripe", "provider://stripe", "api_key")
    assert body["config_json"] == {"auth_location": "header", "header_name": "X-Api-Key"}
    assert body["secret_config_keys"] == ["api_key"]
    assert "ak-test-secret" not in response.text
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == 24


async def test_get_one_and_list_answer_the_same_object(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id = await _zone(client, admin)
    provider_id = await make_provider(client, admin, zone_id, kind="oauth2_authorization_code")
    one = await client.get(f"/v1/zones/{zone_id}/providers/{provider_id}", headers=admin)
    assert one.status_code == 200, one.text
    listed = await client.get(f"/v1/zones/{zone_id}/providers", headers=admin)
    assert listed.status_code == 200
    assert listed.json() == [one.json()]
    assert one.json()["secret_config_keys"] == ["client_secret"]
    assert one.json()["config_json"]["client_auth_method"] == "client_secret_basic"
    assert AUTHORIZATION_CODE_CONFIG["client_secret"] not in one.text + listed.text


async def test_post_records_a_provider_created_change(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = await _zone(client, admin)
    provider_id = await make_provider(client, admin, zone_id)
    changes = [payload for stream, payload in await outbox(engine) if stream == "caracal.changes"]
    assert {
        "event": "provider.created",
        "zone_id": zone_id,
        "entity_type": "provider",
        "entity_id": provider_id,
    }.items() <= changes[-1].items()
    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM providers"))).scalar_one()
    assert count == 1


async def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    return body


async def test_post_to_a_missing_or_archived_zone_is_404_zone_not_found_before_body_rules(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """The zone is checked first: even a body without name or identifier gets zone_not_found."""
    await _error(
        await _post(client, admin, "no-such-zone", {"kind": "none", "name": "x"}), 404, "zone_not_found"
    )
    zone_id = await _zone(client, admin)
    assert (await client.delete(f"/v1/zones/{zone_id}", headers=admin)).status_code == 204
    await _error(await _post(client, admin, zone_id, {"kind": "none"}), 404, "zone_not_found")
    assert await count_rows(engine, "providers") == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x"},
        {"name": "x", "kind": "ldap"},
        {"name": "x", "kind": None},
        {"name": 5, "kind": "none"},
        {"name": None, "kind": "none"},
        {"identifier": ["provider://x"], "kind": "none"},
        {"name": "x", "kind": "none", "config_json": "{}"},
        {"name": "x", "kind": "none", "config_json": None},
        {"name": "x\u0000y", "kind": "none"},
    ],
    ids=[
        "kind-missing",
        "kind-unknown",
        "kind-null",
        "name-number",
        "name-null",
        "identifier-list",
        "config-string",
        "config-null",
        "name-nul",
    ],
)
async def test_post_body_breaking_the_schema_is_400_invalid_provider(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, body: dict[str, Any]
) -> None:
    zone_id = await _zone(client, admin)
    await _error(await _post(client, admin, zone_id, body), 400, "invalid_provider")
    assert await count_rows(engine, "providers") == 0


@pytest.mark.parametrize(
    "body",
    [{"kind": "none"}, {"kind": "none", "name": "  ", "identifier": "\t"}, {"kind": "none", "name": ""}],
    ids=["neither", "whitespace-only", "empty"],
)
async def test_post_without_a_name_or_identifier_is_400_invalid_provider(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]
) -> None:
    """Whitespace-only strings count as absent, so they do not satisfy "at least one of them"."""
    zone_id = await _zone(client, admin)
    body = await _error(await _post(client, admin, zone_id, body), 400, "invalid_provider")
    assert "name or identifier" in body["detail"]


async def test_post_ignores_keys_the_contract_does_not_name(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Providers are lenient: unknown body keys are dropped, not refused."""
    zone_id = await _zone(client, admin)
    response = await _post(client, admin, zone_id, {"name": "Plain", "kind": "none", "colour": "red"})
    assert response.status_code == 201, response.text
    assert "colour" not in response.json()


@pytest.mark.parametrize(
    "identifier",
    [
        "stripe",
        "provider://",
        "provider://Stripe",
        "provider://a--b",
        "provider://-a",
        "provider://a-",
        "provider://a_b",
        "https://a",
        "provider://a/b",
        "provider://" + "a" * 2000,
    ],
)
async def test_post_with_a_malformed_identifier_is_400_invalid_provider_identifier(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, identifier: str
) -> None:
    zone_id = await _zone(client, admin)
    response = await _post(client, admin, zone_id, {"identifier": identifier, "kind": "none"})
    body = await _error(response, 400, "invalid_provider_identifier")
    assert "provider://" in body["message"]
    assert await count_rows(engine, "providers") == 0


async def test_post_with_a_broken_config_is_400_invalid_provider_config_with_a_message(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """The route answers the rule's message (each rule: tests/unit/test_provider_config.py)."""
    zone_id = await _zone(client, admin)
    config = {**API_KEY_CONFIG, "colour": "red", "size": 3}
    response = await _post(client, admin, zone_id, {"name": "k", "kind": "api_key", "config_json": config})
    body = await _error(response, 400, "invalid_provider_config")
    assert "unknown keys colour, size" in body["message"]
    assert API_KEY_CONFIG["api_key"] not in response.text
    response = await _post(client, admin, zone_id, {"name": "k", "kind": "api_key"})
    assert "header_name is required" in (await _error(response, 400, "invalid_provider_config"))["message"]
    assert await count_rows(engine, "providers") == 0


async def test_identifier_is_validated_before_the_config(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id = await _zone(client, admin)
    body = {"identifier": "bad", "kind": "none", "config_json": {"x": 1}}
    await _error(await _post(client, admin, zone_id, body), 400, "invalid_provider_identifier")


@pytest.mark.parametrize(
    ("name", "kind", "identifier"),
    [
        ("Stripe Live", "api_key", "provider://stripe-live"),
        ("  GitHub  ", "none", "provider://github"),
        ("provider://already-an-identifier", "none", "provider://already-an-identifier"),
        ("provider://Upper Case", "none", "provider://upper-case"),
        ("provider://", "oauth2_client_credentials", "provider://oauth2-client-credentials-provider"),
        ("!!!", "none", "provider://provider"),
        ("ÄÖÜ", "bearer_token", "provider://provider"),
    ],
)
async def test_identifier_defaults_to_provider_scheme_and_the_slug_of_the_name(
    client: httpx.AsyncClient, admin: dict[str, str], name: str, kind: str, identifier: str
) -> None:
    """provider:// + slug(name less a leading provider://, else `<kind> provider`; empty slug: provider)."""
    zone_id = await _zone(client, admin)
    config = {
        "api_key": API_KEY_CONFIG,
        "bearer_token": {"bearer_token": "t"},
        "oauth2_client_credentials": {
            "token_endpoint": "https://idp.example.com/token",
            "client_id": "c",
            "allowed_token_hosts": ["idp.example.com"],
            "client_auth_method": "none",
        },
    }.get(kind, {})
    response = await _post(client, admin, zone_id, {"name": name, "kind": kind, "config_json": config})
    assert response.status_code == 201, response.text
    assert (response.json()["identifier"], response.json()["name"]) == (identifier, name.strip())


async def test_name_defaults_to_the_identifier_and_both_are_trimmed(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id = await _zone(client, admin)
    response = await _post(client, admin, zone_id, {"identifier": "  provider://mail  ", "kind": "none"})
    assert response.status_code == 201, response.text
    assert (response.json()["name"], response.json()["identifier"]) == ("provider://mail", "provider://mail")


async def test_generated_identifiers_skip_live_ones_but_reuse_archived_ones(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Collisions among non-archived providers get -2, -3; an archived provider's identifier is free."""
    zone_id = await _zone(client, admin)
    made = [await _post(client, admin, zone_id, {"name": "Mail", "kind": "none"}) for _ in range(3)]
    assert [r.json()["identifier"] for r in made] == [
        "provider://mail",
        "provider://mail-2",
        "provider://mail-3",
    ]
    first = made[0].json()["id"]
    assert (await client.delete(f"/v1/zones/{zone_id}/providers/{first}", headers=admin)).status_code == 204
    again = await _post(client, admin, zone_id, {"name": "Mail", "kind": "none"})
    assert again.json()["identifier"] == "provider://mail"
    other_zone = await _zone(client, admin)
    elsewhere = await _post(client, admin, other_zone, {"name": "Mail", "kind": "none"})
    assert elsewhere.json()["identifier"] == "provider://mail"


async def test_a_given_identifier_taken_by_a_live_provider_is_409_and_writes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = await _zone(client, admin)
    body = {"identifier": "provider://mail", "kind": "none"}
    assert (await _post(client, admin, zone_id, body)).status_code == 201
    before = await outbox(engine)
    await _error(await _post(client, admin, zone_id, body), 409, "provider_identifier_conflict")
    assert await count_rows(engine, "providers") == 1
    assert await outbox(engine) == before


async def test_concurrent_posts_of_one_name_all_get_distinct_identifiers(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Creators of one base identifier take turns: none loses its attempts to the others."""
    zone_id = await _zone(client, admin)
    responses = await asyncio.gather(
        *(_post(client, admin, zone_id, {"name": "Busy", "kind": "none"}) for _ in range(8))
    )
    assert [r.status_code for r in responses] == [201] * 8, [r.text for r in responses]
    identifiers = {r.json()["identifier"] for r in responses}
    assert identifiers == {"provider://busy", *(f"provider://busy-{n}" for n in range(2, 9))}


async def test_an_auto_identifier_taken_meanwhile_by_another_writer_is_chosen_again(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A writer that does not take turns (explicit identifier, another API) holds provider://race
    uncommitted: the POST waits on the unique index, loses, and retries with provider://race-2."""
    zone_id = await _zone(client, admin)
    async with engine.connect() as other:
        await other.execute(
            text(
                "INSERT INTO providers (id, zone_id, name, identifier, provider_kind)"
                " VALUES ('racer', :z, 'racer', 'provider://race', 'none')"
            ),
            {"z": zone_id},
        )
        posting = asyncio.create_task(_post(client, admin, zone_id, {"name": "Race", "kind": "none"}))
        await eventually(lambda: _waiting_on_a_lock(engine), "the POST waits on the racer's row")
        await other.commit()
    response = await posting
    assert response.status_code == 201, response.text
    assert response.json()["identifier"] == "provider://race-2"


async def _waiting_on_a_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT%'"
            )
        )
        return bool(found.scalar_one())


async def test_get_answers_404_for_a_missing_or_archived_provider(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id = await _zone(client, admin)
    await _error(
        await client.get(f"/v1/zones/{zone_id}/providers/nope", headers=admin), 404, "provider_not_found"
    )
    provider_id = await make_provider(client, admin, zone_id)
    assert (
        await client.delete(f"/v1/zones/{zone_id}/providers/{provider_id}", headers=admin)
    ).status_code == 204
    response = await client.get(f"/v1/zones/{zone_id}/providers/{provider_id}", headers=admin)
    await _error(response, 404, "provider_not_found")


async def test_list_pages_newest_first_with_a_link_header_and_hides_archived(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id = await _zone(client, admin)
    ids = [await make_provider(client, admin, zone_id, kind="none", name=f"p{n}") for n in range(3)]
    gone = await make_provider(client, admin, zone_id, kind="none", name="gone")
    assert (await client.delete(f"/v1/zones/{zone_id}/providers/{gone}", headers=admin)).status_code == 204
    first = await client.get(f"/v1/zones/{zone_id}/providers?limit=2", headers=admin)
    assert [p["id"] for p in first.json()] == ids[::-1][:2]
    link = first.headers["link"]
    assert link.startswith(f"</v1/zones/{zone_id}/providers?limit=2&cursor=") and link.endswith(
        '>; rel="next"'
    )
    second = await client.get(link[1 : link.index(">")], headers=admin)
    assert [p["id"] for p in second.json()] == [ids[0]]
    assert "link" not in second.headers
    bad = await client.get(f"/v1/zones/{zone_id}/providers?limit=0", headers=admin)
    await _error(bad, 400, "invalid_query")
    await _error(
        await client.get(f"/v1/zones/{zone_id}/providers?cursor=x", headers=admin), 400, "invalid_cursor"
    )
    assert (await client.get("/v1/zones/no-such-zone/providers", headers=admin)).json() == []


async def test_delete_archives_answers_204_then_404_and_records_the_change(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = await _zone(client, admin)
    provider_id = await make_provider(client, admin, zone_id)
    url = f"/v1/zones/{zone_id}/providers/{provider_id}"
    response = await client.delete(url, headers=admin)
    assert (response.status_code, response.content) == (204, b"")
    await _error(await client.delete(url, headers=admin), 404, "provider_not_found")
    await _error(await client.patch(url, json={"name": "x"}, headers=admin), 404, "provider_not_found")
    async with engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT archived_at, updated_at > created_at AS moved FROM providers"))
        ).one()
    assert row.archived_at is not None and row.moved
    events = [p["event"] for s, p in await outbox(engine) if s == "caracal.changes"]
    assert events[-1] == "provider.deleted"
