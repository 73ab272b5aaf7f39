"""Application client secrets in the contract's `argon2id$<salt>$<hash>` form (CONTRACT.md §7.3).

The STS verifies them from the `applications` table, so the format and parameters are fixed:
Argon2id v1.3, m=65536 KiB, t=3, p=2, a 16-byte salt and a 32-byte hash, both unpadded standard
base64. Hashing takes ~0.1 s of CPU and 64 MiB, so it runs through `offload.run_cpu`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os

from argon2.low_level import ARGON2_VERSION, Type, hash_secret_raw

from caracal.offload import run_cpu

PREFIX = "argon2id"
TIME_COST = 3
MEMORY_KIB = 65536
PARALLELISM = 2
SALT_BYTES = 16
HASH_BYTES = 32


async def hash_client_secret(secret: str) -> str:
    """The value to store in `applications.client_secret_hash`, with a fresh salt."""
    salt = os.urandom(SALT_BYTES)
    digest = await run_cpu(_argon2id, secret.encode(), salt)
    return f"{PREFIX}${_b64(salt)}${_b64(digest)}"


async def verify_client_secret(secret: str, stored: str) -> bool:
    """Whether `secret` is the one `stored` was made from; a malformed `stored` matches nothing."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    salt, expected = parsed
    digest = await run_cpu(_argon2id, secret.encode(), salt)
    return hmac.compare_digest(digest, expected)


def _argon2id(secret: bytes, salt: bytes) -> bytes:
    return hash_secret_raw(
        secret, salt, TIME_COST, MEMORY_KIB, PARALLELISM, HASH_BYTES, Type.ID, ARGON2_VERSION
    )


def _parse(stored: str) -> tuple[bytes, bytes] | None:
    prefix, _, rest = stored.partition("$")
    salt_b64, _, hash_b64 = rest.partition("$")
    if prefix != PREFIX or not salt_b64 or not hash_b64:
        return None
    try:
        salt, digest = _unb64(salt_b64), _unb64(hash_b64)
    except (binascii.Error, ValueError):
        return None
    if len(salt) != SALT_BYTES or len(digest) != HASH_BYTES:
        return None
    return salt, digest


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
