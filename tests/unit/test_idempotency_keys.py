"""Idempotency-Key's pure rules: the key syntax, the request fingerprint and the sealing key."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from caracal.crypto import open_sealed, seal
from caracal.domain.idempotency import idempotency_key, is_valid_key, request_fingerprint


@pytest.mark.parametrize("key", ["a", "~" * 255, "order-2026-12-02/7", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}"])
def test_visible_ascii_keys_of_1_to_255_characters_are_valid(key: str) -> None:
    assert is_valid_key(key)


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "tab\t", "nul\0", "é", "\x7f"])
def test_empty_long_spaced_control_and_non_ascii_keys_are_invalid(key: str) -> None:
    assert not is_valid_key(key)


def test_the_fingerprint_tells_apart_what_makes_two_requests_different() -> None:
    base = request_fingerprint("POST", "/v1/zones", b"", b'{"name":"a"}')
    assert base == request_fingerprint("POST", "/v1/zones", b"", b'{"name":"a"}')
    others = {
        request_fingerprint("POST", "/v1/zones", b"", b'{"name":"b"}'),
        request_fingerprint("POST", "/v1/admin-tokens", b"", b'{"name":"a"}'),
        request_fingerprint("POST", "/v1/zones", b"x=1", b'{"name":"a"}'),
        request_fingerprint("PUT", "/v1/zones", b"", b'{"name":"a"}'),
        request_fingerprint("POST", "/v1/zone", b"s", b'{"name":"a"}'),  # same bytes split elsewhere
    }
    assert base not in others and len(others) == 5


def test_only_the_same_bearer_and_key_open_a_stored_body() -> None:
    fingerprint = request_fingerprint("POST", "/v1/zones", b"", b"{}")
    mine = idempotency_key("tok-1", "cat_secret", "k", fingerprint)
    sealed = seal(mine.sealing_key, b"the answer", mine.aad)
    assert open_sealed(
        idempotency_key("tok-1", "cat_secret", "k", fingerprint).sealing_key, sealed, mine.aad
    ) == (b"the answer")
    for other in (
        idempotency_key("tok-1", "cat_other", "k", fingerprint),
        idempotency_key("tok-1", "cat_secret", "k2", fingerprint),
    ):
        assert other.sealing_key != mine.sealing_key
        with pytest.raises(InvalidTag):
            open_sealed(other.sealing_key, sealed, other.aad)
