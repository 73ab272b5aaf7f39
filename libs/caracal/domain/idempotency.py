"""Idempotency keys: a keyed POST's first response, stored with its mutation and replayed for 24 h.

A key belongs to one admin token. The stored body is sealed (AES-256-GCM) under a key derived from
the caller's bearer token and the Idempotency-Key, so the secrets a create answers (tokens, client
secrets) are unreadable to whoever reads the database: it holds only the token's SHA-256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Integer, bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.crypto import open_sealed, seal
from caracal.db.tables.idempotency import IDEMPOTENCY_KEYS_PKEY
from caracal.db.tables.idempotency import idempotency_keys as keys

KEY_MAX_LENGTH = 255
EXPIRY_BATCH = 1000
_TTL = text("interval '24 hours'")
_LIVE = keys.c.created_at > func.now() - _TTL


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """One request's key: whose it is, what it names, and the fingerprint of the request sent."""

    token_id: str
    key: str
    fingerprint: bytes
    sealing_key: bytes

    @property
    def aad(self) -> bytes:
        return b"\0".join((self.token_id.encode(), self.key.encode(), self.fingerprint))


@dataclass(frozen=True, slots=True)
class StoredResponse:
    fingerprint: bytes
    status: int
    body: bytes
    content_type: str


def is_valid_key(value: str) -> bool:
    """1 to 255 visible ASCII characters (no spaces, no controls)."""
    return 1 <= len(value) <= KEY_MAX_LENGTH and all("!" <= ch <= "~" for ch in value)


def request_fingerprint(method: str, path: str, query: bytes, body: bytes) -> bytes:
    """SHA-256 of what makes two requests the same one: method, path (with query) and body bytes."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, body):
        digest.update(len(part).to_bytes(8, "big"))  # length-prefixed: no two splits hash alike
        digest.update(part)
    return digest.digest()


def idempotency_key(token_id: str, bearer: str, key: str, fingerprint: bytes) -> IdempotencyKey:
    sealing_key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"caracal idempotency-key\0" + key.encode()
    ).derive(bearer.encode())
    return IdempotencyKey(token_id, key, fingerprint, sealing_key)


async def find_response(conn: AsyncConnection, idem: IdempotencyKey) -> StoredResponse | None:
    """The live (under 24 h old) response stored under this token's key, opened; None if none."""
    found = (
        await conn.execute(
            select(keys.c.fingerprint, keys.c.status, keys.c.body, keys.c.content_type).where(
                keys.c.token_id == idem.token_id, keys.c.key == idem.key, _LIVE
            )
        )
    ).first()
    if found is None:
        return None
    fingerprint, status, body, content_type = found
    if fingerprint != idem.fingerprint:  # another request's: its body is sealed for that one
        return StoredResponse(fingerprint, status, b"", content_type)
    return StoredResponse(fingerprint, status, open_sealed(idem.sealing_key, body, idem.aad), content_type)


async def store_response(
    conn: AsyncConnection, idem: IdempotencyKey, status: int, body: bytes, content_type: str
) -> bool:
    """Store the response in the caller's transaction; False when a live key is already there.

    A concurrent request with the same key waits here on the key's index entry until the other
    transaction ends, so of two duplicates only one commits. An expired row is taken over.
    """
    values = {
        "fingerprint": idem.fingerprint,
        "status": status,
        "body": seal(idem.sealing_key, body, idem.aad),
        "content_type": content_type,
    }
    statement = insert(keys).values(token_id=idem.token_id, key=idem.key, **values)
    taken_over = statement.on_conflict_do_update(
        constraint=IDEMPOTENCY_KEYS_PKEY,
        set_={**{name: statement.excluded[name] for name in values}, "created_at": func.now()},
        where=keys.c.created_at <= func.now() - _TTL,
    ).returning(keys.c.status)
    return (await conn.execute(taken_over)).first() is not None


_EXPIRED = (
    select(keys.c.token_id, keys.c.key)
    .where(keys.c.created_at <= func.now() - _TTL)
    .order_by(keys.c.created_at)
    .limit(bindparam("batch", type_=Integer))
    .with_for_update(skip_locked=True)
    .cte("expired_keys")
)
_EXPIRE = delete(keys).where(keys.c.token_id == _EXPIRED.c.token_id, keys.c.key == _EXPIRED.c.key)


async def expire_keys(conn: AsyncConnection, batch: int = EXPIRY_BATCH) -> int:
    """Delete one batch of keys older than 24 h by the database clock; how many went."""
    return (await conn.execute(_EXPIRE, {"batch": batch})).rowcount
