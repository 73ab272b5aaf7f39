"""PATCH …/providers/{id} (CONTRACT.md §4.4, §4.14): error order, replacement of config and secrets."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.api_helpers import (
    API_KEY_CONFIG,
    AUTHORIZATION_CODE_CONFIG,
    make_provider,
    make_zone,
    outbox,
)

CLIENT_CREDENTIALS = {
    "token_endpoint": "https://idp.example.com/token",
    "client_id": "c",
    "allowed_token_hosts": ["idp.example.com"],
    "client_secret": "cc-secret",
}


async def _provider(client: httpx.AsyncClient, admin: dict[str, str], **overrides: Any) -> tuple[str, str]:
    zone_id = str((await make_zone(client, admin))["id"])
    return zone_id, await make_provider(client, admin, zone_id, **overrides)


async def _patch(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, provider_id: str, body: Any
) -> httpx.Response:
    return await client.patch(f"/v1/zones/{zone_id}/providers/{provider_id}", json=body, headers=admin)


def _code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"])


async def _sealed(engine: AsyncEngine, provider_id: str) -> Any:
    async with engine.connect() as conn:
        query = text(
            "SELECT provider_kind, config_json, secret_config_ct, secret_config_nonce, secret_config_keys,"
            " updated_at FROM providers WHERE id = :id"
        )
        return (await conn.execute(query, {"id": provider_id})).one()


async def test_patch_renames_and_reidentifies_answering_the_whole_provider(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id, provider_id = await _provider(client, admin)
    before = await _sealed(engine, provider_id)
    body = {"name": "  Renamed ", "identifier": " provider://renamed ", "unknown": 1}
    response = await _patch(client, admin, zone_id, provider_id, body)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["name"], updated["identifier"]) == ("Renamed", "provider://renamed")
    assert updated["config_json"] == {"auth_location": "header", "header_name": "X-Api-Key"}
    assert updated["secret_config_keys"] == ["api_key"]
    assert updated["updated_at"] > updated["created_at"]
    after = await _sealed(engine, provider_id)
    assert (after.secret_config_ct, after.secret_config_nonce) == (
        before.secret_config_ct,
        before.secret_config_nonce,
    )
    assert [p for s, p in await outbox(engine) if s == "caracal.changes"][-1]["event"] == "provider.updated"


@pytest.mark.parametrize(
    "body",
    [{"kind": "ldap"}, {"name": 1}, {"config_json": []}, {"identifier": None}, {"kind": None}],
    ids=["kind-unknown", "name-number", "config-list", "identifier-null", "kind-null"],
)
async def test_patch_body_breaking_the_schema_is_400_invalid_provider_even_for_a_missing_provider(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]
) -> None:
    zone_id, provider_id = await _provider(client, admin)
    assert _code(await _patch(client, admin, zone_id, provider_id, body), 400) == "invalid_provider"
    assert _code(await _patch(client, admin, zone_id, "missing", body), 400) == "invalid_provider"


async def test_patch_errors_come_in_the_contracts_order(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """identifier, then kind-without-config, then the row lookup of a config-only PATCH, then the config,
    then no_fields, then the identifier conflict, then the final 404."""
    zone_id, provider_id = await _provider(client, admin)
    other = await make_provider(client, admin, zone_id, identifier="provider://taken", kind="none")
    assert other
    missing = "missing"
    cases = [
        (missing, {"identifier": "Bad", "kind": "none"}, 400, "invalid_provider_identifier"),
        (missing, {"kind": "none"}, 400, "provider_config_required"),
        (missing, {"config_json": {"x": 1}}, 404, "provider_not_found"),
        (missing, {"kind": "none", "config_json": {"x": 1}}, 400, "invalid_provider_config"),
        (provider_id, {"config_json": {"header_name": "bad header"}}, 400, "invalid_provider_config"),
        (missing, {}, 400, "no_fields"),
        (missing, {"name": "   ", "identifier": ""}, 400, "no_fields"),
        (provider_id, {"identifier": "provider://taken"}, 409, "provider_identifier_conflict"),
        (missing, {"identifier": "provider://taken"}, 404, "provider_not_found"),
        (missing, {"name": "x"}, 404, "provider_not_found"),
    ]
    for target, body, status, code in cases:
        response = await _patch(client, admin, zone_id, target, body)
        assert _code(response, status) == code, (body, response.text)


async def test_invalid_identifier_and_config_messages_are_in_the_body(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id, provider_id = await _provider(client, admin)
    response = await _patch(client, admin, zone_id, provider_id, {"identifier": "nope"})
    assert "provider://" in response.json()["message"]
    response = await _patch(client, admin, zone_id, provider_id, {"config_json": {"colour": "red"}})
    assert "unknown keys colour" in response.json()["message"]


async def test_config_only_patch_replaces_the_public_config_and_keeps_the_secrets(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """config_json replaces the whole public part; no secret sent: the sealed blob is untouched."""
    zone_id, provider_id = await _provider(client, admin)
    before = await _sealed(engine, provider_id)
    config = {"auth_location": "query", "query_param_name": "key"}
    response = await _patch(client, admin, zone_id, provider_id, {"config_json": config})
    assert response.status_code == 200, response.text
    assert response.json()["config_json"] == config
    assert response.json()["secret_config_keys"] == ["api_key"]
    after = await _sealed(engine, provider_id)
    assert after.secret_config_ct == before.secret_config_ct


async def test_config_only_patch_with_a_secret_reseals_the_whole_blob(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id, provider_id = await _provider(
        client, admin, kind="oauth2_client_credentials", config_json=CLIENT_CREDENTIALS
    )
    before = await _sealed(engine, provider_id)
    config = {
        **CLIENT_CREDENTIALS,
        "client_auth_method": "private_key_jwt",
        "private_key": "pem",
        "key_id": "k",
    }
    del config["client_secret"]
    response = await _patch(client, admin, zone_id, provider_id, {"config_json": config})
    assert response.status_code == 200, response.text
    assert response.json()["secret_config_keys"] == ["private_key"]  # client_secret, not resent, is gone
    after = await _sealed(engine, provider_id)
    assert after.secret_config_nonce != before.secret_config_nonce
    assert after.secret_config_keys == ["private_key"]


async def test_config_only_patch_of_an_oauth_kind_may_rely_on_the_stored_secret(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id, provider_id = await _provider(client, admin, kind="oauth2_authorization_code")
    config = {k: v for k, v in AUTHORIZATION_CODE_CONFIG.items() if k != "client_secret"}
    response = await _patch(
        client, admin, zone_id, provider_id, {"config_json": {**config, "scopes": ["write"]}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["secret_config_keys"] == ["client_secret"]
    moved = {**config, "client_auth_method": "none"}
    assert (await _patch(client, admin, zone_id, provider_id, {"config_json": moved})).status_code == 200


async def test_config_only_patch_of_an_oauth_kind_without_the_needed_secret_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """The stored client_secret does not satisfy private_key_jwt's private_key: 400, nothing written."""
    zone_id, provider_id = await _provider(
        client, admin, kind="oauth2_client_credentials", config_json=CLIENT_CREDENTIALS
    )
    before = await _sealed(engine, provider_id)
    config = {k: v for k, v in CLIENT_CREDENTIALS.items() if k != "client_secret"}
    body = {"config_json": {**config, "client_auth_method": "private_key_jwt"}}
    response = await _patch(client, admin, zone_id, provider_id, body)
    assert _code(response, 400) == "invalid_provider_config"
    assert "private_key is required" in response.json()["message"]
    assert await _sealed(engine, provider_id) == before


async def test_patch_that_sets_kind_requires_its_secrets(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Setting kind is a new configuration: secrets are required even when the stored ones would do."""
    zone_id, provider_id = await _provider(client, admin)
    body = {"kind": "api_key", "config_json": {"header_name": "X-Other"}}
    response = await _patch(client, admin, zone_id, provider_id, body)
    assert _code(response, 400) == "invalid_provider_config"
    assert "secret api_key is required" in response.json()["message"]


async def test_patch_to_a_kind_without_secrets_clears_the_sealed_columns(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id, provider_id = await _provider(client, admin)
    response = await _patch(
        client, admin, zone_id, provider_id, {"kind": "caracal_mandate", "config_json": {}}
    )
    assert response.status_code == 200, response.text
    assert (response.json()["kind"], response.json()["config_json"]) == ("caracal_mandate", {})
    assert response.json()["secret_config_keys"] == []
    row = await _sealed(engine, provider_id)
    assert (row.secret_config_ct, row.secret_config_nonce, row.secret_config_keys) == (None, None, [])


async def test_patch_to_another_secret_kind_seals_only_the_new_secrets(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id, provider_id = await _provider(client, admin)
    body = {
        "kind": "bearer_token",
        "config_json": {"bearer_token": "bt-new", "allowed_token_hosts": ["A.example"]},
    }
    response = await _patch(client, admin, zone_id, provider_id, body)
    assert response.status_code == 200, response.text
    assert response.json()["config_json"] == {"allowed_token_hosts": ["a.example"]}
    assert response.json()["secret_config_keys"] == ["bearer_token"]
    assert "bt-new" not in response.text and API_KEY_CONFIG["api_key"] not in response.text
    assert (await _sealed(engine, provider_id)).provider_kind == "bearer_token"
