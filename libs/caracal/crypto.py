"""Data at rest: admin-token digests, and zone DEKs wrapped under the KEK (AES-256-GCM)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from caracal.settings import KeyRing

NONCE_BYTES = 12


class KeyUnavailable(Exception):
    """The key id stored beside a ciphertext is not in CARACAL_KEK."""


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def digests_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def new_admin_token() -> str:
    return "cat_" + secrets.token_urlsafe(32)


def seal(key: bytes, plaintext: bytes, aad: bytes | None = None) -> bytes:
    """AES-256-GCM with a fresh nonce: nonce || ciphertext || tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes | None = None) -> bytes:
    return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)


def new_wrapped_dek(kek: KeyRing, zone_id: str) -> tuple[bytes, str | None]:
    """A random 32-byte DEK wrapped by the active KEK, bound to its zone; (ciphertext, key id).

    Without a KEK (CARACAL_MODE=dev only) the DEK is stored unwrapped and the key id is None.
    """
    dek = os.urandom(32)
    active = kek.active
    if active is None:
        return dek, None
    key_id, key = active
    return seal(key, dek, zone_id.encode()), key_id


def unwrap_dek(kek: KeyRing, zone_id: str, ciphertext: bytes, key_id: str | None) -> bytes:
    if key_id is None:
        return ciphertext
    key = kek.get(key_id)
    if key is None:
        raise KeyUnavailable(f"KEK {key_id!r} is not configured")
    return open_sealed(key, ciphertext, zone_id.encode())
