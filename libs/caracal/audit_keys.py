"""Which AUDIT_HMAC_KEY id sealed which stretch of the admin audit chain, read from its rotation checkpoints.

A rotation checkpoint at chain_seq N (docs/audit-chain.md, "Key rotation") says: the key
`previous_key_id` sealed the rows up to N, `key_id` seals those after it; both keys sign it. So the
chain is split into spans, one per key, and each row is verified with its span's key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.audit_chain import AuditKeyMissing, Rotation, rotation_signature, seal_batch
from caracal.db.engine import create_engine
from caracal.db.locks import AUDIT_SEAL_LOCK_KEY
from caracal.domain.audit import audit_row, insert_audit_rows
from caracal.domain.context import Caller
from caracal.ids import new_id
from caracal.settings import KeyRing, Settings

_ROTATIONS = """
    SELECT chain_seq, mac, created_at, signature, key_id, previous_key_id, previous_signature
      FROM admin_audit_checkpoints WHERE previous_key_id IS NOT NULL ORDER BY chain_seq
"""
_NEWEST_KEY_ID = "SELECT key_id FROM admin_audit_checkpoints ORDER BY chain_seq DESC LIMIT 1"


class KeysMissing(RuntimeError):
    """A key that sealed part of the chain is not in the AUDIT_HMAC_KEY given: nothing can be verified."""


@dataclass(frozen=True, slots=True)
class Span:
    """The rows one key sealed: from the previous span's `last` + 1 to `last` (None: to the head)."""

    key_id: str
    key: bytes
    last: int | None


@dataclass(frozen=True, slots=True)
class KeyEpochs:
    spans: tuple[Span, ...]
    problems: tuple[tuple[int, str], ...]  # (chain_seq of a rotation checkpoint, what is wrong with it)

    def key_for(self, chain_seq: int) -> bytes:
        return next(s.key for s in self.spans if s.last is None or chain_seq <= s.last)

    def lines(self) -> list[str]:
        if len(self.spans) == 1:
            return [f"one key sealed the whole chain: {self.spans[0].key_id!r}"]
        lines, first = [], 1
        for span in self.spans:
            upto = f"{span.last}" if span.last is not None else "the head"
            lines.append(f"key {span.key_id!r} sealed chain_seq {first} to {upto}")
            first = (span.last or 0) + 1
        return lines


async def load_epochs(conn: asyncpg.Connection, keys: KeyRing) -> KeyEpochs:
    """The spans from the rotation checkpoints; without one, the key named by the newest checkpoint
    (or the first of `keys` on a chain with no checkpoint yet) sealed everything."""
    rotations = await conn.fetch(_ROTATIONS)
    if rotations:
        ids = [rotations[0]["previous_key_id"]]
    else:
        ids = [await conn.fetchval(_NEWEST_KEY_ID) or (keys.active[0] if keys.active else "default")]
    lasts: list[int | None] = []
    problems: list[tuple[int, str]] = []
    for rotation in rotations:
        if rotation["previous_key_id"] != ids[-1]:
            took_over = f"hands over from key {rotation['previous_key_id']!r}"
            problems.append(
                (rotation["chain_seq"], f"{took_over}, but key {ids[-1]!r} sealed the rows before it")
            )
        ids.append(rotation["key_id"])
        lasts.append(rotation["chain_seq"])
    spans = tuple(_span(keys, key_id, last, lasts) for key_id, last in zip(ids, [*lasts, None], strict=True))
    problems += [p for rotation in rotations for p in _signature_problems(keys, rotation)]
    return KeyEpochs(spans, tuple(problems))


def _span(keys: KeyRing, key_id: str, last: int | None, lasts: list[int | None]) -> Span:
    key = keys.get(key_id)
    if key is None:
        position = lasts.index(last) if last is not None else len(lasts)
        first = (lasts[position - 1] or 0) + 1 if position else 1
        upto = f"..{last}" if last is not None else " to the head"
        raise KeysMissing(
            f"AUDIT_HMAC_KEY lacks key id {key_id!r}, which sealed chain_seq {first}{upto}"
            " (give every key the chain was sealed with, the sealing one first)"
        )
    return Span(key_id, key, last)


def _signature_problems(keys: KeyRing, rotation: asyncpg.Record) -> list[tuple[int, str]]:
    seq = rotation["chain_seq"]
    at = Rotation(
        seq, rotation["mac"], rotation["created_at"], rotation["previous_key_id"], rotation["key_id"]
    )
    problems = []
    for column, key_id in (
        ("signature", rotation["key_id"]),
        ("previous_signature", rotation["previous_key_id"]),
    ):
        key = keys.get(key_id)
        if key is None or rotation_signature(key, at) != rotation[column]:
            problems.append((seq, f"the rotation's signature by key {key_id!r} does not match (edited)"))
    return problems


_LOCK = text("SELECT pg_advisory_lock(:k)")  # waits for a reaper's sealing run to end
_UNLOCK = text("SELECT pg_advisory_unlock(:k)")
ROTATION_WAIT_S = 30.0


async def rotate_now(settings: Settings, keys: KeyRing, say: Callable[[str], None]) -> bool:
    """Record the rotation as an audit row and seal up to it under the old key, then hand over to the
    first key of `keys` with a rotation checkpoint; False when rows stay unsealable for too long."""
    assert keys.active is not None
    engine = create_engine(settings, pool_size=1)
    try:
        async with engine.connect() as conn:
            head_key = (await conn.execute(text(_NEWEST_KEY_ID))).scalar()
            if head_key in (None, keys.active[0]):
                say(f"the chain is sealed with key {keys.active[0]!r} already: nothing to rotate")
                return True
            await conn.commit()
            say(f"rotating the admin audit chain from key {head_key!r} to {keys.active[0]!r}")
            async with conn.begin():
                await insert_audit_rows(conn, [_rotation_row(head_key, keys.active[0])])
            await conn.execute(_LOCK, {"k": AUDIT_SEAL_LOCK_KEY})
            await conn.commit()
            try:
                return await _seal_until_rotated(conn, keys, say)
            finally:
                await conn.execute(_UNLOCK, {"k": AUDIT_SEAL_LOCK_KEY})
                await conn.commit()
    finally:
        await engine.dispose()


def _rotation_row(previous_key_id: str, key_id: str) -> dict[str, Any]:
    return audit_row(
        Caller(None, f"cli-{new_id()}"),
        action="caracal audit rotate-key",
        entity_type="audit_key",
        entity_id=key_id,
        payload={"previous_key_id": previous_key_id, "key_id": key_id},
    )


async def _seal_until_rotated(conn: AsyncConnection, keys: KeyRing, say: Callable[[str], None]) -> bool:
    deadline = time.monotonic() + ROTATION_WAIT_S
    while time.monotonic() < deadline:
        async with conn.begin():
            report = await seal_batch(conn, keys)
        if report.sealed:
            say(f"sealed {report.sealed} row(s) under the old key")
        if report.rotated_to is not None:
            say(f"key {report.rotated_to!r} seals every row after chain_seq {report.checkpoint}")
            return True
        if not report.sealed:
            await asyncio.sleep(0.2)  # a transaction older than our row is still running
    say("a long transaction keeps rows from being sealed; the reaper finishes the rotation after it ends")
    return False


def rotate_key_main() -> int:
    """`caracal audit rotate-key`: 0 rotated (or nothing to do), 1 not finished yet, 2 cannot run."""
    from caracal.cli import say, settings_or_exit  # noqa: PLC0415 - cli imports this module lazily

    settings = settings_or_exit()
    if not settings.database_url or settings.audit_hmac_key is None:
        say("caracal audit rotate-key needs DATABASE_URL and AUDIT_HMAC_KEY (<new id>:<hex>,<old id>:<hex>)")
        return 2
    try:
        return 0 if asyncio.run(rotate_now(settings, settings.audit_hmac_key, say)) else 1
    except AuditKeyMissing as exc:
        say(str(exc))
        return 2
    except (OSError, SQLAlchemyError) as exc:  # unreachable, refused: one line, no traceback
        say(f"the database did not answer: {exc.__class__.__name__}: {exc}")
        return 2
