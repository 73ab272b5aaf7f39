"""AUDIT_HMAC_KEY rotation: the chain hands over from the old key to the new at a checkpoint both
sign, stays verifiable as a whole given both keys, and an old key leaked afterwards rewrites nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.audit_chain import AuditKeyMissing, canonical_content, link, seal_batch
from caracal.audit_keys import KeysMissing
from caracal.audit_verify import verify_chain
from caracal.domain.audit import audit_row, insert_audit_rows
from caracal.domain.context import Caller
from caracal.settings import Settings, parse_hmac_ring
from tests.support import remember_secret, run_cli

OLD_HEX = remember_secret("old AUDIT_HMAC_KEY", secrets.token_hex(32))
NEW_HEX = remember_secret("new AUDIT_HMAC_KEY", secrets.token_hex(32))
OLD_ONLY = parse_hmac_ring(f"a1:{OLD_HEX}")
BOTH = parse_hmac_ring(f"a2:{NEW_HEX},a1:{OLD_HEX}")
NEW_ONLY = parse_hmac_ring(f"a2:{NEW_HEX}")


async def _write_and_seal(engine: AsyncEngine, count: int, keys: Any) -> Any:
    rows = [audit_row(Caller(None, "req"), action="POST /v1/zones", method="POST") for _ in range(count)]
    async with engine.begin() as conn:
        await insert_audit_rows(conn, rows)
    async with engine.begin() as conn:
        return await seal_batch(conn, keys)


async def _chain(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        query = "SELECT *, payload_json::text AS payload FROM admin_audit_events ORDER BY chain_seq"
        return list(await conn.execute(text(query)))


async def _checkpoints(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(text("SELECT * FROM admin_audit_checkpoints ORDER BY chain_seq")))


def _by_hand(key_hex: str, cp: Any) -> bytes:
    """The rotation signature as docs/audit-chain.md specifies it, computed without our helpers."""
    created = cp.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = ["caracal.audit.rotation.v1", cp.chain_seq, cp.mac.hex(), created, cp.previous_key_id, cp.key_id]
    message = json.dumps(body, separators=(",", ":")).encode()
    return hmac.new(bytes.fromhex(key_hex), message, hashlib.sha256).digest()


async def _verify(settings: Settings, keys: Any) -> tuple[list[Any], list[str]]:
    assert settings.database_url is not None
    lines: list[str] = []
    return await verify_chain(settings.database_url, keys, lines.append), lines


async def test_the_sealer_hands_over_at_a_checkpoint_both_keys_sign_and_verify_needs_both(
    engine: AsyncEngine, settings: Settings
) -> None:
    """Rows up to the rotation are sealed by the old key, after it by the new; a reaper left with the
    old key alone refuses to seal rather than fork the chain."""
    await _write_and_seal(engine, 3, OLD_ONLY)
    handover = await _write_and_seal(engine, 2, BOTH)  # the batch that meets the new key: still old
    assert (handover.sealed, handover.checkpoint, handover.rotated_to) == (2, 5, "a2")
    await _write_and_seal(engine, 2, BOTH)
    rows = await _chain(engine)
    previous = bytes(32)
    for row in rows:  # each MAC by the key of its stretch, recomputed here
        key = bytes.fromhex(OLD_HEX if row.chain_seq <= 5 else NEW_HEX)
        assert row.mac == link(key, previous, canonical_content(row)), row.chain_seq
        previous = row.mac
    rotation = (await _checkpoints(engine))[-1]
    assert (rotation.chain_seq, rotation.key_id, rotation.previous_key_id) == (5, "a2", "a1")
    assert (rotation.signature, rotation.previous_signature) == (
        _by_hand(NEW_HEX, rotation),
        _by_hand(OLD_HEX, rotation),
    )
    findings, lines = await _verify(settings, BOTH)
    assert findings == []
    assert "key 'a1' sealed chain_seq 1 to 5" in lines and "key 'a2' sealed chain_seq 6 to the head" in lines
    with pytest.raises(KeysMissing, match=r"lacks key id 'a1', which sealed chain_seq 1\.\.5"):
        await _verify(settings, NEW_ONLY)
    with pytest.raises(AuditKeyMissing, match="sealed with key id 'a2', which it does not hold"):
        await _write_and_seal(engine, 1, OLD_ONLY)
    assert len([r for r in await _chain(engine) if r.chain_seq is None]) == 1


async def test_an_old_key_leaked_after_the_rotation_cannot_rewrite_the_rows_it_sealed(
    engine: AsyncEngine, settings: Settings
) -> None:
    """Re-chaining an edited row under the old key changes the MAC the new key's first row and the
    rotation checkpoint are bound to: verify names the edit."""
    await _write_and_seal(engine, 3, OLD_ONLY)
    await _write_and_seal(engine, 1, BOTH)
    await _write_and_seal(engine, 2, BOTH)
    old = bytes.fromhex(OLD_HEX)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE admin_audit_events SET action = 'forged' WHERE chain_seq = 2"))
    previous = bytes(32)
    for row in (r for r in await _chain(engine) if r.chain_seq <= 4):  # a consistent old-key chain again
        mac = link(old, previous, canonical_content(row))
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE admin_audit_events SET mac = :m WHERE id = :id"), {"m": mac, "id": row.id}
            )
        previous = mac
    findings, _lines = await _verify(settings, BOTH)
    assert {(f.kind, f.chain_seq) for f in findings} >= {("edited", 5), ("checkpoint", 4)}


async def test_caracal_audit_rotate_key_records_the_rotation_and_hands_over_at_once(
    engine: AsyncEngine, settings: Settings
) -> None:
    """A bare key is `default`; the command's own audit row is the old key's last; re-run, nothing."""
    await _write_and_seal(engine, 2, parse_hmac_ring(OLD_HEX))
    rotate = f"a2:{NEW_HEX},default:{OLD_HEX}"
    code, output = await run_cli(settings, "audit", "rotate-key", AUDIT_HMAC_KEY=rotate)
    assert code == 0, output
    assert "rotating the admin audit chain from key 'default' to 'a2'" in output
    assert "key 'a2' seals every row after chain_seq 3" in output
    last = (await _chain(engine))[-1]
    assert (last.chain_seq, last.action, last.entity_id) == (3, "caracal audit rotate-key", "a2")
    assert json.loads(last.payload).items() >= {"previous_key_id": "default", "key_id": "a2"}.items()
    code, output = await run_cli(settings, "audit", "rotate-key", AUDIT_HMAC_KEY=rotate)
    assert code == 0 and "already: nothing to rotate" in output
    code, output = await run_cli(settings, "audit", "verify", AUDIT_HMAC_KEY=rotate)
    assert code == 0 and "the chain is intact" in output, output
    code, output = await run_cli(settings, "audit", "verify", AUDIT_HMAC_KEY=f"a2:{NEW_HEX}")
    assert code == 2 and "AUDIT_HMAC_KEY lacks key id 'default', which sealed chain_seq 1..3" in output
