"""Provider secrets at rest: the STS's format, never shown, ZONE_KEK required; the implicit none provider."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.db.engine import transaction
from caracal.domain.providers import ensure_none_provider, require_live_provider
from caracal.errors import Conflict, NotFound
from caracal.settings import Settings
from caracal_api.__main__ import prepare
from caracal_api.resources import Resources
from tests.integration.api_helpers import (
    AUTHORIZATION_CODE_CONFIG,
    app_with,
    count_rows,
    make_provider,
    make_zone,
    outbox,
)
from tests.support import ZONE_KEK_HEX

SECRET = "sk-live-do-not-leak-9f3a"


async def _columns(engine: AsyncEngine, provider_id: str) -> Any:
    async with engine.connect() as conn:
        query = text(
            "SELECT secret_config_ct, secret_config_nonce, secret_config_keys FROM providers WHERE id = :id"
        )
        return (await conn.execute(query, {"id": provider_id})).one()


def _sts_open(ciphertext_and_tag: bytes, nonce: bytes) -> Any:
    """What the STS does: ChaCha20-Poly1305 under ZONE_KEK, no AAD, the plaintext a JSON object."""
    return json.loads(ChaCha20Poly1305(bytes.fromhex(ZONE_KEK_HEX)).decrypt(nonce, ciphertext_and_tag, None))


async def test_the_sts_opens_secret_config_ct_with_zone_kek_and_finds_the_secrets(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """secret_config_ct = ciphertext‖16-byte tag, secret_config_nonce = 12 bytes, fresh per write."""
    zone_id = (await make_zone(client, admin))["id"]
    config = {**AUTHORIZATION_CODE_CONFIG, "client_secret": SECRET}
    first = await make_provider(client, admin, zone_id, kind="oauth2_authorization_code", config_json=config)
    second = await make_provider(client, admin, zone_id, kind="oauth2_authorization_code", config_json=config)
    rows = [await _columns(engine, provider_id) for provider_id in (first, second)]
    for row in rows:
        assert len(row.secret_config_nonce) == 12
        assert _sts_open(row.secret_config_ct, row.secret_config_nonce) == {"client_secret": SECRET}
        assert (
            len(row.secret_config_ct)
            == len(json.dumps({"client_secret": SECRET}, separators=(",", ":"))) + 16
        )
        assert row.secret_config_keys == ["client_secret"]
    assert rows[0].secret_config_nonce != rows[1].secret_config_nonce


async def test_secrets_never_appear_in_responses_or_log_lines(
    client: httpx.AsyncClient, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Create, read, list, update, refuse and archive: no body and no captured line holds a secret."""
    caplog.set_level(logging.DEBUG)
    zone_id = (await make_zone(client, admin))["id"]
    base = f"/v1/zones/{zone_id}/providers"
    created = await client.post(
        base,
        json={"name": "k", "kind": "api_key", "config_json": {"header_name": "X-Key", "api_key": SECRET}},
        headers=admin,
    )
    assert created.status_code == 201
    one = f"{base}/{created.json()['id']}"
    patched_secret = SECRET + "-2"
    responses = [
        created,
        await client.get(one, headers=admin),
        await client.get(base, headers=admin),
        await client.patch(
            one, json={"config_json": {"header_name": "X-Key", "api_key": patched_secret}}, headers=admin
        ),
        await client.patch(
            one, json={"config_json": {"header_name": "bad header", "api_key": SECRET}}, headers=admin
        ),
        await client.post(
            base, json={"name": "x", "kind": "api_key", "config_json": {"api_key": SECRET}}, headers=admin
        ),
        await client.patch(one, json={"kind": "none", "config_json": {"api_key": SECRET}}, headers=admin),
        await client.delete(one, headers=admin),
    ]
    assert [r.status_code for r in responses] == [201, 200, 200, 200, 400, 400, 400, 204]
    for response in responses:
        assert SECRET not in response.text and patched_secret not in response.text
    lines = [record.getMessage() + (record.exc_text or "") for record in caplog.records]
    assert not [line for line in lines if SECRET in line]


async def test_without_zone_kek_a_secret_is_503_zone_kek_missing_and_nothing_changes(
    client: httpx.AsyncClient, resources: Resources, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Sealing needs ZONE_KEK: a clear 503 naming it; providers without secrets still work."""
    del client  # it seeds the admin token
    async with app_with(resources, zone_kek=None) as [http]:
        zone_id = (await make_zone(http, admin))["id"]
        events = await outbox(engine)
        response = await http.post(
            f"/v1/zones/{zone_id}/providers",
            json={"name": "k", "kind": "api_key", "config_json": {"header_name": "X-Key", "api_key": SECRET}},
            headers=admin,
        )
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "zone_kek_missing"
        assert "ZONE_KEK" in response.json()["detail"]
        assert (await count_rows(engine, "providers"), await outbox(engine)) == (0, events)
        plain = await make_provider(http, admin, zone_id, kind="none")
        body = {"kind": "bearer_token", "config_json": {"bearer_token": SECRET}}
        response = await http.patch(f"/v1/zones/{zone_id}/providers/{plain}", json=body, headers=admin)
        assert (response.status_code, response.json()["error"]) == (503, "zone_kek_missing")
        assert (await _columns(engine, plain)).secret_config_keys == []


async def _sealed_provider(client: httpx.AsyncClient, admin: dict[str, str]) -> str:
    zone_id = (await make_zone(client, admin))["id"]
    return await make_provider(client, admin, zone_id)


async def test_api_start_up_outside_dev_refuses_sealed_secrets_without_zone_kek(
    client: httpx.AsyncClient, admin: dict[str, str], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line naming ZONE_KEK and exit code 2, like any configuration error."""
    await _sealed_provider(client, admin)
    with pytest.raises(SystemExit) as stopped:
        await prepare(replace(settings, zone_kek=None, mode="stable"))
    assert stopped.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("caracal: configuration error: ZONE_KEK: required when CARACAL_MODE=stable")


async def test_api_start_up_without_zone_kek_is_fine_in_dev_or_without_sealed_secrets(
    client: httpx.AsyncClient, admin: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    await make_provider(client, admin, zone_id, kind="none")
    await prepare(replace(settings, zone_kek=None, mode="stable"))
    await _sealed_provider(client, admin)
    await prepare(replace(settings, zone_kek=None, mode="dev"))
    await prepare(settings)
    assert await count_rows(engine, "providers") == 2


async def test_ensure_none_provider_creates_it_once_with_the_contracts_fields(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    for _ in range(2):
        async with transaction(engine) as conn:
            assert await ensure_none_provider(conn, zone_id) == f"provider-none-{zone_id}"
    response = await client.get(f"/v1/zones/{zone_id}/providers/provider-none-{zone_id}", headers=admin)
    provider = response.json()
    assert (provider["name"], provider["identifier"], provider["kind"]) == (
        "No credential",
        "provider://none",
        "none",
    )
    assert (provider["config_json"], provider["secret_config_keys"]) == ({}, [])
    events = [
        p["event"]
        for s, p in await outbox(engine)
        if s == "caracal.changes" and p["entity_type"] == "provider"
    ]
    assert events == ["provider.created"]


async def test_ensure_none_provider_brings_an_archived_one_back(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    async with transaction(engine) as conn:
        provider_id = await ensure_none_provider(conn, zone_id)
    assert (
        await client.delete(f"/v1/zones/{zone_id}/providers/{provider_id}", headers=admin)
    ).status_code == 204
    async with transaction(engine) as conn:
        assert await ensure_none_provider(conn, zone_id) == provider_id
    assert (
        await client.get(f"/v1/zones/{zone_id}/providers/{provider_id}", headers=admin)
    ).status_code == 200
    events = [
        p["event"]
        for s, p in await outbox(engine)
        if s == "caracal.changes" and p["entity_type"] == "provider"
    ]
    assert events == ["provider.created", "provider.deleted", "provider.updated"]


async def test_ensure_none_provider_beside_a_live_provider_none_identifier_is_a_conflict(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    await make_provider(client, admin, zone_id, kind="none", identifier="provider://none")
    with pytest.raises(Conflict) as refused:
        async with transaction(engine) as conn:
            await ensure_none_provider(conn, zone_id)
    assert refused.value.code == "provider_identifier_conflict"


async def test_require_live_provider_answers_the_sealed_columns_or_provider_not_found(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    provider_id = await make_provider(client, admin, zone_id)
    async with engine.connect() as conn:
        row = await require_live_provider(conn, zone_id, provider_id)
        assert (row.provider_kind, row.secret_config_keys) == ("api_key", ["api_key"])
        assert _sts_open(row.secret_config_ct, row.secret_config_nonce) == {"api_key": "ak-test-secret"}
        with pytest.raises(NotFound, match="provider"):
            await require_live_provider(conn, "another-zone", provider_id)
    assert (
        await client.delete(f"/v1/zones/{zone_id}/providers/{provider_id}", headers=admin)
    ).status_code == 204
    async with engine.connect() as conn:
        with pytest.raises(NotFound) as missing:
            await require_live_provider(conn, zone_id, provider_id)
    assert missing.value.code == "provider_not_found"
