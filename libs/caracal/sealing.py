"""Values the original STS opens from the tables: provider secrets and provider-grant tokens.

Both are ChaCha20-Poly1305 under ZONE_KEK with a fresh 12-byte nonce and no AAD (CONTRACT.md §4.4,
§4.8, §7.3). The layouts are part of the wire because the STS reads those columns:
- provider secrets: `secret_config_ct` = ciphertext‖tag, `secret_config_nonce` = nonce, and the
  plaintext is the JSON object of secret names to values;
- provider-grant tokens: one column holding nonce‖ciphertext‖tag, the plaintext the token's UTF-8.
Sealing takes microseconds for values this small, so it runs inline, not through `offload`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


class ZoneKekMissing(RuntimeError):
    """A provider secret or token must be sealed or opened, and ZONE_KEK is not set."""

    def __init__(self) -> None:
        super().__init__(
            "ZONE_KEK: required to seal or open provider secrets and provider-grant tokens "
            "(64 hex characters, the same value the STS is given)"
        )


class SealedValueInvalid(ValueError):
    """A sealed value does not open under ZONE_KEK: wrong key, altered or truncated bytes."""


@dataclass(frozen=True, slots=True)
class SealedSecretConfig:
    """The three provider columns: `secret_config_ct`, `secret_config_nonce`, `secret_config_keys`."""

    ciphertext: bytes
    nonce: bytes
    keys: tuple[str, ...]


def seal_secret_config(kek: bytes | None, secrets: Mapping[str, str]) -> SealedSecretConfig:
    """Seal a provider's secret part (name -> value) as the STS expects to open it."""
    plaintext = json.dumps(dict(secrets), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = _cipher(kek).encrypt(nonce, plaintext.encode(), None)
    return SealedSecretConfig(ciphertext, nonce, tuple(sorted(secrets)))


def open_secret_config(kek: bytes | None, ciphertext: bytes, nonce: bytes) -> dict[str, str]:
    """The secret part of a provider from its `secret_config_ct` and `secret_config_nonce`."""
    if len(nonce) != NONCE_BYTES:
        raise SealedValueInvalid(f"secret_config_nonce must be {NONCE_BYTES} bytes, got {len(nonce)}")
    plaintext = _open(kek, nonce, ciphertext, "secret_config_ct")
    try:
        secrets = json.loads(plaintext)
    except ValueError as exc:
        raise SealedValueInvalid("secret_config_ct does not hold a JSON object") from exc
    if not isinstance(secrets, dict) or not all(isinstance(v, str) for v in secrets.values()):
        raise SealedValueInvalid("secret_config_ct does not hold a JSON object of strings")
    return secrets


def seal_token(kek: bytes | None, token: str) -> bytes:
    """A provider-grant token (`access_token_ct`, `refresh_token_ct`): nonce‖ciphertext‖tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + _cipher(kek).encrypt(nonce, token.encode(), None)


def open_token(kek: bytes | None, sealed: bytes) -> str:
    """The token a `seal_token` value holds."""
    plaintext = _open(kek, sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], "sealed token")
    try:
        return plaintext.decode()
    except UnicodeDecodeError as exc:
        raise SealedValueInvalid("sealed token is not UTF-8 text") from exc


def _cipher(kek: bytes | None) -> ChaCha20Poly1305:
    if kek is None:
        raise ZoneKekMissing
    if len(kek) != KEY_BYTES:
        raise ValueError(f"ZONE_KEK must be {KEY_BYTES} bytes, got {len(kek)}")
    return ChaCha20Poly1305(kek)


def _open(kek: bytes | None, nonce: bytes, ciphertext_and_tag: bytes, what: str) -> bytes:
    cipher = _cipher(kek)
    if len(nonce) != NONCE_BYTES or len(ciphertext_and_tag) < TAG_BYTES:
        raise SealedValueInvalid(f"{what} is truncated")
    try:
        return cipher.decrypt(nonce, ciphertext_and_tag, None)
    except InvalidTag as exc:
        raise SealedValueInvalid(f"{what} does not open under ZONE_KEK (wrong key or altered)") from exc
