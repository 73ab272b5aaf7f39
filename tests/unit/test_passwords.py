"""Client secrets: the contract's `argon2id$<salt>$<hash>` (m=64 MiB, t=3, p=2), verifiable by the STS."""

from __future__ import annotations

import base64
import re

import pytest
from argon2 import PasswordHasher
from argon2.low_level import Type, hash_secret_raw

from caracal.passwords import hash_client_secret, verify_client_secret

STORED = re.compile(r"^argon2id\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})$")  # 16 and 32 bytes, unpadded


def _decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _contract_hash(secret: str, salt: bytes) -> bytes:
    """CONTRACT.md §7.3, spelled out here rather than taken from the module under test."""
    return hash_secret_raw(secret.encode(), salt, 3, 65536, 2, 32, Type.ID, 0x13)


async def test_stored_value_is_argon2id_salt_and_hash_with_the_contracts_parameters() -> None:
    stored = await hash_client_secret("cs_live_s3cret")
    match = STORED.match(stored)
    assert match is not None, stored
    salt, digest = _decode(match[1]), _decode(match[2])
    assert digest == _contract_hash("cs_live_s3cret", salt)
    # The same salt and hash as a PHC string: argon2-cffi's own verifier agrees, parameters included.
    phc = f"$argon2id$v=19$m=65536,t=3,p=2${match[1]}${match[2]}"
    assert PasswordHasher().verify(phc, "cs_live_s3cret")


async def test_each_hash_takes_a_fresh_salt() -> None:
    first, second = await hash_client_secret("same"), await hash_client_secret("same")
    assert first.split("$")[1] != second.split("$")[1]


async def test_a_value_written_by_another_implementation_verifies() -> None:
    """A hash computed in the test from the contract's description verifies; another secret does not."""
    salt = bytes(range(16))
    stored = "argon2id${}${}".format(
        base64.b64encode(salt).decode().rstrip("="),
        base64.b64encode(_contract_hash("from-the-original", salt)).decode().rstrip("="),
    )
    assert await verify_client_secret("from-the-original", stored)
    assert not await verify_client_secret("from-the-originaL", stored)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "argon2id",
        "argon2id$$",
        "argon2i$AAECAwQFBgcICQoLDA0ODw$" + "A" * 43,
        "argon2id$AAECAwQFBgcICQoLDA0O$" + "A" * 43,  # 14-byte salt
        "argon2id$AAECAwQFBgcICQoLDA0ODw$" + "A" * 40,  # short hash
        "argon2id$AAECAwQFBgcICQoLDA0ODw$" + "*" * 43,  # not base64
        "$argon2id$v=19$m=65536,t=3,p=2$AAECAwQFBgcICQoLDA0ODw$" + "A" * 43,  # PHC, not the contract
    ],
)
async def test_a_malformed_stored_value_matches_nothing(stored: str) -> None:
    assert not await verify_client_secret("anything", stored)
