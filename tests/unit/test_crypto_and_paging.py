"""Data at rest and list cursors."""

from datetime import UTC, datetime

import pytest
from cryptography.exceptions import InvalidTag

from caracal.crypto import new_wrapped_dek, open_sealed, seal, token_digest, unwrap_dek
from caracal.db.paging import decode_cursor, encode_cursor, parse_page
from caracal.domain.audit import entity_of
from caracal.domain.zones import first_free, slugify
from caracal.errors import InvalidInput
from caracal.settings import parse_kek


def test_dek_is_wrapped_under_the_active_kek_and_bound_to_its_zone() -> None:
    """A DEK unwraps with its key id and zone; another zone id fails (AAD)."""
    ring = parse_kek(f"a:{'01' * 32},b:{'02' * 32}")
    wrapped, key_id = new_wrapped_dek(ring, "zone-1")
    assert key_id == "a" and len(wrapped) == 12 + 32 + 16
    dek = unwrap_dek(ring, "zone-1", wrapped, key_id)
    assert len(dek) == 32
    with pytest.raises(InvalidTag):
        unwrap_dek(ring, "zone-2", wrapped, key_id)


def test_seal_uses_a_fresh_nonce_each_time() -> None:
    """Two seals of the same plaintext differ and both open."""
    key = bytes(32)
    first, second = seal(key, b"secret"), seal(key, b"secret")
    assert first != second
    assert open_sealed(key, first) == open_sealed(key, second) == b"secret"


def test_token_digest_is_raw_sha256() -> None:
    """Admin tokens are stored as the raw 32-byte SHA-256."""
    assert token_digest("abc").hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_cursor_keeps_microseconds() -> None:
    """The opaque cursor round-trips created_at at full precision."""
    ts = datetime(2026, 6, 3, 10, 12, 13, 456789, tzinfo=UTC)
    assert decode_cursor(encode_cursor(ts, "id-1")) == (ts, "id-1")


@pytest.mark.parametrize("cursor", ["%%%", "e30", "eyJ0cyI6IiIsImlkIjoiIn0", "bm90IGpzb24"])
def test_undecodable_cursor_is_invalid_cursor(cursor: str) -> None:
    """Garbage, `{}`, empty fields and non-JSON give 400 invalid_cursor."""
    with pytest.raises(InvalidInput) as raised:
        decode_cursor(cursor)
    assert raised.value.code == "invalid_cursor"


@pytest.mark.parametrize("limit", ["0", "501", "x", "-1", "1.5"])
def test_limit_outside_range_is_invalid_query(limit: str) -> None:
    """limit must be an integer from 1 to 500."""
    with pytest.raises(InvalidInput) as raised:
        parse_page(limit, None)
    assert raised.value.code == "invalid_query"


def test_slug_generation_follows_the_contract() -> None:
    """Lowercase, runs of other characters become '-', trimmed, empty falls back; collisions count up."""
    assert slugify("  Acme Corp!! EU ", "zone") == "acme-corp-eu"
    assert slugify("***", "zone") == "zone"
    assert first_free("acme", {"acme", "acme-2"}) == "acme-3"
    assert first_free("acme", set()) == "acme"
    assert first_free("a", {"a", *(f"a-{n}" for n in range(2, 1000))}).startswith("a-0")


def test_audit_entity_is_the_rightmost_known_segment_with_an_id() -> None:
    """The audit trail names the zone and the right-most entity segment followed by an id."""
    assert entity_of("/v1/zones/z1/dcr-status") == ("z1", "zones", "z1")
    assert entity_of("/v1/zones/z1/applications/a1?x=1") == ("z1", "applications", "a1")
    assert entity_of("/v1/zones") == (None, None, None)
