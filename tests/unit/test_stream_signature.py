"""Stream entries and `_sig` exactly as CONTRACT.md §5.4 defines them."""

import hashlib
import hmac

from caracal.events import Scalar, canonical_text, sign, stream_entry, verify

KEY = bytes.fromhex("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")


def test_signature_matches_the_contract_vector_with_two_fields() -> None:
    """The §5.4 vector: audit:events with action and amount."""
    fields = {"action": "transfer", "amount": "100"}
    assert canonical_text("audit:events", fields) == "audit:events\naction=transfer\namount=100\n"
    assert (
        sign(KEY, "audit:events", fields)
        == "c06ccc579e026c31a97a04f203981b236a3c88041712e9b46242e8762da23d75"
    )


def test_signature_matches_the_contract_vector_with_one_field() -> None:
    """The §5.4 vector with action only."""
    expected = "93c82e377fc1ff7f1430549aa20cd20971150173b5996308ab84cb48d6f2683d"
    assert sign(KEY, "audit:events", {"action": "transfer"}) == expected


def test_signature_ignores_field_order_and_skips_sig_and_nulls() -> None:
    """Field order is irrelevant; `_sig` and null fields are not signed."""
    a = sign(KEY, "s", {"b": "2", "a": "1"})
    assert a == sign(KEY, "s", {"a": "1", "b": "2", "_sig": "x", "c": None})


def test_entry_is_flat_with_outbox_id_and_signature() -> None:
    """An entry is outbox_id, the payload's non-null values as strings, and a verifying `_sig`."""
    entry = stream_entry(
        KEY,
        "caracal.changes",
        "01",
        {"event": "zone.created", "zone_id": "z", "n": 3, "flag": True, "gone": None},
    )
    assert entry["outbox_id"] == "01" and entry["n"] == "3" and entry["flag"] == "true"
    assert "gone" not in entry
    assert verify(KEY, "caracal.changes", entry)
    assert not verify(KEY, "caracal.changes", {**entry, "zone_id": "other"})
    assert not verify(KEY, "caracal.sessions.revoke", entry)


def test_entry_without_key_is_unsigned() -> None:
    """In dev mode without a key, `_sig` is omitted."""
    assert "_sig" not in stream_entry(None, "s", "01", {"a": "1"})


def test_signature_is_hmac_sha256_for_keys_shorter_and_longer_than_a_block() -> None:
    """The signer keys SHA-256 itself once per key: it gives what hmac.new gives, also for keys past
    SHA-256's 64-byte block (hashed first) and non-ASCII values."""
    fields: dict[str, Scalar] = {"zone_id": "z", "name": "é∂", "n": 3, "flag": False}
    for length in (1, 32, 63, 64, 65, 200):
        key = bytes(range(length))
        text = canonical_text("caracal.changes", fields).encode()
        assert sign(key, "caracal.changes", fields) == hmac.new(key, text, hashlib.sha256).hexdigest()
