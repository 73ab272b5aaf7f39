"""Key rotation: `caracal keys rotate-kek` re-wraps zone DEKs, `rotate-zone-kek` re-seals what the STS
reads (both batched, resumable after an interruption, no-ops when re-run, checked by raw SQL), and
`streams-drained` says when the stream consumers may switch STREAMS_HMAC_KEY."""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal import key_rotation
from caracal.db.engine import plain_url, transaction
from caracal.domain.admin_tokens import seed_env_token
from caracal.events import CHANGES, stream_entry
from caracal.key_rotation import ZoneKeks, reseal_grant_tokens, reseal_provider_secrets, rewrap_zone_deks
from caracal.settings import Settings, parse_kek
from caracal.stream_keys import drained_report
from tests.integration.api_helpers import AUTHORIZATION_CODE_CONFIG, bearer, make_provider, make_zone
from tests.integration.test_api_provider_grants import oauth_world
from tests.support import HMAC_KEY_HEX, KEK, ZONE_KEK_HEX, eventually, remember_secret, run_cli

NEW_KEK_HEX = remember_secret("rotated CARACAL_KEK", secrets.token_hex(32))
NEW_ZONE_KEK_HEX = remember_secret("rotated ZONE_KEK", secrets.token_hex(32))
OLD_ZONE_KEK = bytes.fromhex(ZONE_KEK_HEX)
NEW_ZONE_KEK = bytes.fromhex(NEW_ZONE_KEK_HEX)
CLIENT_SECRET = remember_secret("client secret", "sk-rotate-" + secrets.token_hex(8))


class Interrupted(Exception):
    """Stands for a run killed right after a batch committed."""


def interrupt_after_first_commit(line: str) -> None:
    if "committed up to" in line:
        raise Interrupted(line)


async def _connect(settings: Settings) -> asyncpg.Connection:
    assert settings.database_url is not None
    return await asyncpg.connect(plain_url(settings.database_url))


async def _rows(engine: AsyncEngine, query: str) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(text(query)))


def _open_dek(key_hex: str, zone_id: str, sealed: bytes) -> bytes:
    """AES-256-GCM as DESIGN.md's "Data at rest" states it: nonce‖ciphertext‖tag, the zone id as AAD."""
    return AESGCM(bytes.fromhex(key_hex)).decrypt(sealed[:12], sealed[12:], zone_id.encode())


async def test_rotate_kek_rewraps_every_dek_under_the_new_id_in_resumable_batches(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The DEK itself is unchanged; after the run only the new key opens any zone's DEK."""
    monkeypatch.setattr(key_rotation, "BATCH", 2)
    old_hex = KEK.partition(":")[2]
    zones = [(await make_zone(client, admin))["id"] for _ in range(5)]
    before = {
        r.id: _open_dek(old_hex, r.id, r.dek_ciphertext) for r in await _rows(engine, "SELECT * FROM zones")
    }
    ring = parse_kek(f"k2:{NEW_KEK_HEX},{KEK}")
    conn = await _connect(settings)
    try:
        with pytest.raises(Interrupted):
            await rewrap_zone_deks(conn, ring, interrupt_after_first_commit)
        arns = sorted(r.kek_arn for r in await _rows(engine, "SELECT kek_arn FROM zones"))
        assert arns == ["k2", "k2", "test1", "test1", "test1"]  # the first batch stayed committed
        resumed = await rewrap_zone_deks(conn, ring, lambda _line: None)
        again = await rewrap_zone_deks(conn, ring, lambda _line: None)
    finally:
        await conn.close()
    assert (resumed.changed, again.changed) == (3, 0)
    rows = await _rows(engine, "SELECT id, dek_ciphertext, kek_arn FROM zones")
    assert {r.kek_arn for r in rows} == {"k2"} and len(rows) == len(zones)
    assert {r.id: _open_dek(NEW_KEK_HEX, r.id, r.dek_ciphertext) for r in rows} == before


async def test_rotate_kek_command_refuses_with_one_line_when_a_dek_key_id_is_not_configured(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, settings: Settings
) -> None:
    """Dropping the old id before re-wrapping is caught and changes nothing; with both ids it runs."""
    zone_id = (await make_zone(client, admin))["id"]
    code, output = await run_cli(settings, "keys", "rotate-kek", CARACAL_KEK=f"k2:{NEW_KEK_HEX}")
    assert code == 2, output
    assert f"caracal: zone {zone_id}: its DEK is wrapped under KEK 'test1'" in output
    assert [r.kek_arn for r in await _rows(engine, "SELECT kek_arn FROM zones")] == ["test1"]
    code, output = await run_cli(settings, "keys", "rotate-kek", CARACAL_KEK=f"k2:{NEW_KEK_HEX},{KEK}")
    assert code == 0, output
    assert "zones: 1 re-encrypted" in output and "done: every zone DEK" in output
    assert [r.kek_arn for r in await _rows(engine, "SELECT kek_arn FROM zones")] == ["k2"]


async def _sealed_world(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """Two providers with a client secret and a provider grant with both tokens, under the old ZONE_KEK."""
    world = await oauth_world(client, admin, client_secret=CLIENT_SECRET)
    config = {**AUTHORIZATION_CODE_CONFIG, "client_secret": CLIENT_SECRET}
    await make_provider(client, admin, world.zone_id, kind="oauth2_authorization_code", config_json=config)
    body = world.body(
        access_token=remember_secret("access", "at-rot-1"), refresh_token=remember_secret("r", "rt-rot-1")
    )
    response = await client.post(world.base, json=body, headers=admin)
    assert response.status_code == 201, response.text


def _sts_open(key: bytes, sealed: bytes | None, nonce: bytes | None = None) -> bytes | None:
    """What the STS does: ChaCha20-Poly1305, no AAD; the nonce apart (providers) or in front (tokens)."""
    if sealed is None:
        return None
    if nonce is None:
        nonce, sealed = sealed[:12], sealed[12:]
    return ChaCha20Poly1305(key).decrypt(nonce, sealed, None)


async def _opened_under(engine: AsyncEngine, key: bytes) -> tuple[list[bytes | None], list[Any]]:
    providers = await _rows(engine, "SELECT * FROM providers WHERE secret_config_ct IS NOT NULL ORDER BY id")
    grants = await _rows(engine, "SELECT * FROM provider_grants ORDER BY id")
    secrets_ = [_sts_open(key, p.secret_config_ct, p.secret_config_nonce) for p in providers]
    tokens = [(_sts_open(key, g.access_token_ct), _sts_open(key, g.refresh_token_ct)) for g in grants]
    return secrets_, tokens


async def test_rotate_zone_kek_reseals_secrets_and_tokens_so_the_sts_opens_them_with_the_new_key(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Interrupted after its first batch, a second run finishes; a third finds nothing to do."""
    monkeypatch.setattr(key_rotation, "BATCH", 1)
    await _sealed_world(client, admin)
    secrets_before, tokens_before = await _opened_under(engine, OLD_ZONE_KEK)
    keks = ZoneKeks(old=OLD_ZONE_KEK, new=NEW_ZONE_KEK)
    conn = await _connect(settings)
    try:
        with pytest.raises(Interrupted):
            await reseal_provider_secrets(conn, keks, interrupt_after_first_commit)
        providers = await reseal_provider_secrets(conn, keks, lambda _line: None)
        grants = await reseal_grant_tokens(conn, keks, lambda _line: None)
        again = [
            await reseal_provider_secrets(conn, keks, print),
            await reseal_grant_tokens(conn, keks, print),
        ]
    finally:
        await conn.close()
    assert (providers.changed, providers.current, grants.changed) == (1, 1, 1)
    assert [(t.changed, t.current, t.unreadable) for t in again] == [(0, 2, []), (0, 1, [])]
    assert await _opened_under(engine, NEW_ZONE_KEK) == (secrets_before, tokens_before)
    assert secrets_before == [f'{{"client_secret":"{CLIENT_SECRET}"}}'.encode()] * 2
    assert tokens_before == [(b"at-rot-1", b"rt-rot-1")]
    assert await _values_opening_under(engine, OLD_ZONE_KEK) == 0


async def _values_opening_under(engine: AsyncEngine, key: bytes) -> int:
    """How many sealed columns (provider secrets, both grant tokens) still open under `key`."""
    providers = await _rows(engine, "SELECT secret_config_ct, secret_config_nonce FROM providers")
    grants = await _rows(engine, "SELECT access_token_ct, refresh_token_ct FROM provider_grants")
    values = [(p.secret_config_ct, p.secret_config_nonce) for p in providers if p.secret_config_ct]
    values += [(token, None) for g in grants for token in g if token is not None]
    opened = 0
    for sealed, nonce in values:
        try:
            _sts_open(key, sealed, nonce)
            opened += 1
        except InvalidTag:
            pass
    return opened


async def test_rotate_zone_kek_command_names_a_value_neither_key_opens_and_reseals_the_rest(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, settings: Settings
) -> None:
    """Exit 1 with the row named; the other rows are done. Missing or equal keys: exit 2, one line."""
    await _sealed_world(client, admin)
    stranger = ChaCha20Poly1305(secrets.token_bytes(32))
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE provider_grants SET refresh_token_ct = :ct"),
            {"ct": b"\0" * 12 + stranger.encrypt(b"\0" * 12, b"x", None)},
        )
    [grant_id] = [r.id for r in await _rows(engine, "SELECT id FROM provider_grants")]
    code, output = await run_cli(
        settings, "keys", "rotate-zone-kek", ZONE_KEK=NEW_ZONE_KEK_HEX, ZONE_KEK_OLD=ZONE_KEK_HEX
    )
    assert code == 1, output
    assert f"UNREADABLE: provider_grants {grant_id} opens under neither key" in output
    assert "providers: 2 re-encrypted" in output
    assert await _values_opening_under(engine, NEW_ZONE_KEK) == 2  # both provider secrets
    assert await _values_opening_under(engine, OLD_ZONE_KEK) == 1  # the named row is left whole
    code, output = await run_cli(settings, "keys", "rotate-zone-kek", ZONE_KEK=NEW_ZONE_KEK_HEX)
    assert (code, output.strip()) == (
        2,
        "caracal: caracal keys rotate-zone-kek needs DATABASE_URL, ZONE_KEK (new) and ZONE_KEK_OLD",
    )


async def test_streams_drained_waits_for_every_group_to_read_and_ack_and_checks_the_newest_signature(
    redis: Redis, settings: Settings
) -> None:
    """Unread entries, then read-but-unacked ones, are "not drained"; acked, the command exits 0."""
    old_key, new_key = secrets.token_bytes(32), bytes.fromhex(HMAC_KEY_HEX)
    for n in range(3):
        await redis.xadd(CHANGES, stream_entry(old_key, CHANGES, f"o{n}", {"event": "zone.created"}))
    await redis.xgroup_create(CHANGES, "gateway", id="0")
    lines: list[str] = []
    assert not await drained_report(str(settings.redis_url), new_key, lines.append)
    assert f"{CHANGES}: newest entry signed with ANOTHER STREAMS_HMAC_KEY, 1 consumer group(s)" in lines
    assert (
        f"{CHANGES}: group gateway: NOT drained (entries not read yet, 0 read but not acknowledged)" in lines
    )
    read = await redis.xreadgroup("gateway", "gw-1", {CHANGES: ">"})
    ids = [entry_id for _stream, entries in read for entry_id, _fields in entries]
    assert not await drained_report(str(settings.redis_url), new_key, lines.append)
    assert lines[-1] == f"{CHANGES}: group gateway: NOT drained (3 read but not acknowledged)"
    await redis.xack(CHANGES, "gateway", *ids)
    await redis.xadd(CHANGES, stream_entry(new_key, CHANGES, "n1", {"event": "zone.created"}))
    code, output = await run_cli(settings, "keys", "streams-drained")
    assert code == 1 and "NOT drained (entries not read yet" in output  # the new entry is unread
    await redis.xreadgroup("gateway", "gw-1", {CHANGES: ">"})
    await redis.xack(CHANGES, "gateway", (await redis.xrevrange(CHANGES, count=1))[0][0])
    code, output = await run_cli(settings, "keys", "streams-drained")
    assert code == 0, output
    assert f"{CHANGES}: newest entry signed with the given STREAMS_HMAC_KEY" in output
    assert "drained: the consumers may be given the new STREAMS_HMAC_KEY now" in output


async def test_a_new_caracal_admin_token_revokes_the_previous_one_and_an_api_rotation_needs_no_restart(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Seeding another CARACAL_ADMIN_TOKEN (the API's start) revokes the earlier env token; a token
    minted through POST /v1/admin-tokens replaces another by DELETE, refused on its next request."""
    minted = await client.post(
        "/v1/admin-tokens", json={"name": "ops-2027", "scope": "global"}, headers=admin
    )
    assert minted.status_code == 201, minted.text
    new_admin = {"Authorization": f"Bearer {remember_secret('minted', minted.json()['token'])}"}
    replacement = remember_secret("env token", "cat_" + secrets.token_urlsafe(32))
    async with transaction(engine) as conn:
        await seed_env_token(conn, replacement)

    async def old_env_token_refused() -> bool:  # this worker cached it up to CARACAL_AUTH_CACHE_TTL_MS
        return (await client.get("/v1/zones", headers=admin)).status_code == 401

    await eventually(old_env_token_refused, "the previous CARACAL_ADMIN_TOKEN refused", within=5)
    assert (await client.get("/v1/zones", headers=bearer(replacement))).status_code == 200
    [old_id] = [r.id for r in await _rows(engine, "SELECT id FROM admin_tokens WHERE name = 'ops-2027'")]
    assert (await client.delete(f"/v1/admin-tokens/{old_id}", headers=bearer(replacement))).status_code == 204
    assert (await client.get("/v1/zones", headers=new_admin)).status_code == 401
    live = await _rows(engine, "SELECT name FROM admin_tokens WHERE revoked_at IS NULL")
    assert [r.name for r in live] == ["bootstrap"]


async def test_a_rotation_command_without_a_database_says_so_in_one_line_without_the_password(
    settings: Settings,
) -> None:
    """Exit 2, one line, nothing of the URL's password (the port given has no server)."""
    closed = "postgresql://caracal:pw-must-not-show@127.0.0.1:1/caracal"
    code, output = await run_cli(settings, "keys", "rotate-kek", DATABASE_URL=closed)
    assert code == 2, output
    [line] = output.strip().splitlines()
    assert line.startswith("caracal: the database did not answer: ")
    assert "pw-must-not-show" not in output
