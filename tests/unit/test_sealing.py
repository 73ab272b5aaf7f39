"""Provider secrets and provider-grant tokens: sealed in the layout the original STS opens."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from caracal.cli import _secrets_file
from caracal.sealing import (
    SealedValueInvalid,
    ZoneKekMissing,
    open_secret_config,
    open_token,
    seal_secret_config,
    seal_token,
)
from caracal.settings import SettingsError, load_settings
from tests.unit import chacha_reference as ref

KEK = bytes.fromhex("1f" * 32)

# RFC 8439 §2.8.2
RFC_KEY = bytes(range(0x80, 0xA0))
RFC_NONCE = bytes.fromhex("070000004041424344454647")
RFC_AAD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
RFC_PLAINTEXT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
    b"sunscreen would be it."
)
RFC_CIPHERTEXT = bytes.fromhex(
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
    "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
    "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
    "3ff4def08e4b7a9de576d26586cec64b6116"
)
RFC_TAG = bytes.fromhex("1ae10b594f09e26a7e902ecbd0600691")


def test_reference_cipher_reproduces_the_rfc_8439_aead_vector() -> None:
    """The test's own ChaCha20-Poly1305 gives RFC 8439 §2.8.2's ciphertext and tag, so it can judge."""
    assert ref.aead_encrypt(RFC_KEY, RFC_NONCE, RFC_PLAINTEXT, RFC_AAD) == (RFC_CIPHERTEXT, RFC_TAG)
    assert ref.aead_decrypt(RFC_KEY, RFC_NONCE, RFC_CIPHERTEXT, RFC_TAG, RFC_AAD) == RFC_PLAINTEXT


def test_provider_secrets_are_ciphertext_and_tag_with_the_nonce_apart_and_no_aad() -> None:
    """secret_config_ct opens with the reference cipher (no AAD) into the JSON object of secrets."""
    secrets = {"client_secret": "s3cr\u00e9t", "api_key": "k-123"}
    sealed = seal_secret_config(KEK, secrets)
    assert len(sealed.nonce) == 12
    assert sealed.keys == ("api_key", "client_secret")
    ciphertext, tag = sealed.ciphertext[:-16], sealed.ciphertext[-16:]
    plaintext = ref.aead_decrypt(KEK, sealed.nonce, ciphertext, tag)
    assert json.loads(plaintext) == secrets
    assert ChaCha20Poly1305(KEK).decrypt(sealed.nonce, sealed.ciphertext, None) == plaintext


def test_provider_secrets_sealed_elsewhere_open_here() -> None:
    """What the original (or any RFC 8439 implementation) wrote into the columns opens."""
    nonce = os.urandom(12)
    ciphertext, tag = ref.aead_encrypt(KEK, nonce, b'{"bearer_token":"tok"}')
    assert open_secret_config(KEK, ciphertext + tag, nonce) == {"bearer_token": "tok"}


def test_provider_grant_tokens_are_nonce_ciphertext_and_tag_in_one_value() -> None:
    """access_token_ct = 12-byte nonce‖ciphertext‖16-byte tag, no AAD, the token's UTF-8 inside."""
    sealed = seal_token(KEK, "ya29.access-token")
    assert len(sealed) == 12 + len("ya29.access-token") + 16
    nonce, ciphertext, tag = sealed[:12], sealed[12:-16], sealed[-16:]
    assert ref.aead_decrypt(KEK, nonce, ciphertext, tag) == b"ya29.access-token"
    assert ChaCha20Poly1305(KEK).decrypt(nonce, sealed[12:], None) == b"ya29.access-token"
    theirs_nonce = os.urandom(12)
    theirs = theirs_nonce + b"".join(ref.aead_encrypt(KEK, theirs_nonce, "refresh-\u00fc".encode()))
    assert open_token(KEK, theirs) == "refresh-\u00fc"


def test_every_write_takes_a_fresh_nonce() -> None:
    """Sealing the same value twice never reuses a nonce (a reuse under one key breaks the cipher)."""
    tokens = {seal_token(KEK, "same")[:12] for _ in range(50)}
    configs = {seal_secret_config(KEK, {"api_key": "same"}).nonce for _ in range(50)}
    assert len(tokens) == 50
    assert len(configs) == 50


def test_a_wrong_key_does_not_open_either_form() -> None:
    other = bytes.fromhex("2e" * 32)
    sealed = seal_secret_config(KEK, {"api_key": "k"})
    with pytest.raises(SealedValueInvalid, match="does not open under ZONE_KEK"):
        open_secret_config(other, sealed.ciphertext, sealed.nonce)
    with pytest.raises(SealedValueInvalid, match="does not open under ZONE_KEK"):
        open_token(other, seal_token(KEK, "t"))


@pytest.mark.parametrize("bit", [0, 8 * 12 - 1, 8 * 12, 8 * 13 + 3, 8 * (12 + 5 + 16) - 1])
def test_a_flipped_bit_anywhere_in_a_sealed_token_is_refused(bit: int) -> None:
    """Nonce, ciphertext or tag: any single flipped bit fails authentication."""
    sealed = bytearray(seal_token(KEK, "token"))
    sealed[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SealedValueInvalid):
        open_token(KEK, bytes(sealed))


def test_a_flipped_bit_in_provider_secrets_is_refused() -> None:
    sealed = seal_secret_config(KEK, {"api_key": "k"})
    altered = bytes([sealed.ciphertext[0] ^ 0x80]) + sealed.ciphertext[1:]
    with pytest.raises(SealedValueInvalid):
        open_secret_config(KEK, altered, sealed.nonce)
    with pytest.raises(SealedValueInvalid):
        open_secret_config(KEK, sealed.ciphertext, bytes([sealed.nonce[0] ^ 1]) + sealed.nonce[1:])


@pytest.mark.parametrize("keep", [0, 5, 12, 27, -1])
def test_a_truncated_token_is_refused(keep: int) -> None:
    sealed = seal_token(KEK, "token")
    with pytest.raises(SealedValueInvalid):
        open_token(KEK, sealed[:keep])


def test_truncated_provider_secrets_or_nonce_are_refused() -> None:
    sealed = seal_secret_config(KEK, {"api_key": "k"})
    with pytest.raises(SealedValueInvalid, match="truncated"):
        open_secret_config(KEK, sealed.ciphertext[:15], sealed.nonce)
    with pytest.raises(SealedValueInvalid):
        open_secret_config(KEK, sealed.ciphertext[:-1], sealed.nonce)
    with pytest.raises(SealedValueInvalid, match="secret_config_nonce must be 12 bytes"):
        open_secret_config(KEK, sealed.ciphertext, sealed.nonce[:11])


def test_sealed_json_that_is_not_an_object_of_strings_is_refused() -> None:
    nonce = os.urandom(12)
    for plaintext in (b"[1,2]", b'{"api_key":5}', b"not json"):
        ciphertext, tag = ref.aead_encrypt(KEK, nonce, plaintext)
        with pytest.raises(SealedValueInvalid, match="JSON object"):
            open_secret_config(KEK, ciphertext + tag, nonce)


def test_without_zone_kek_sealing_says_the_variable_is_required() -> None:
    for attempt in (
        lambda: seal_secret_config(None, {"api_key": "k"}),
        lambda: seal_token(None, "t"),
        lambda: open_token(None, b"\x00" * 40),
        lambda: open_secret_config(None, b"\x00" * 20, b"\x00" * 12),
    ):
        with pytest.raises(ZoneKekMissing, match="^ZONE_KEK: required"):
            attempt()


def test_zone_kek_setting_is_64_hex_and_optional() -> None:
    assert load_settings({"CARACAL_MODE": "dev"}).zone_kek is None
    assert load_settings({"CARACAL_MODE": "dev", "ZONE_KEK": "1f" * 32}).zone_kek == KEK


@pytest.mark.parametrize("bad", ["1f" * 31, "1f" * 33, "zz" * 32, "00" * 32, "local1:" + "1f" * 32])
def test_malformed_zone_kek_fails_start_up_naming_it(bad: str) -> None:
    with pytest.raises(SettingsError, match="^ZONE_KEK: "):
        load_settings({"CARACAL_MODE": "dev", "ZONE_KEK": bad})


def test_zone_kek_can_come_from_a_file_and_never_shows_in_repr(tmp_path: Path) -> None:
    path = tmp_path / "zone_kek"
    path.write_text("ab" * 32 + "\n")
    settings = load_settings({"CARACAL_MODE": "dev", "ZONE_KEK_FILE": str(path)})
    assert settings.zone_kek == bytes.fromhex("ab" * 32)
    assert "ab" * 4 not in repr(settings)
    assert repr(settings.zone_kek)[2:-1] not in repr(settings)


def test_caracal_up_generates_a_zone_kek_once_and_keeps_it(tmp_path: Path) -> None:
    """`caracal up` writes ZONE_KEK into .caracal/secrets.env; the next start reads the same key."""
    stored, generated = _secrets_file(tmp_path)
    assert "ZONE_KEK" in generated
    assert load_settings({"CARACAL_MODE": "dev", "ZONE_KEK": stored["ZONE_KEK"]}).zone_kek is not None
    again, generated_again = _secrets_file(tmp_path)
    assert (again["ZONE_KEK"], generated_again) == (stored["ZONE_KEK"], set())
