"""Policy bundles: canonical bytes, Ed25519 signatures a holder of the public key verifies, ETags."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from caracal.domain.policy_set_bundles import (
    BundleKey,
    canonical_bytes,
    public_key_wire,
    require_key,
    sign_bundle,
)
from caracal.errors import Unavailable

SEED = bytes(range(32))
DOCUMENT = {"revision": 3, "policies": [{"content": "package caracal.authz\n"}], "b": "é", "a": 1}


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_canonical_bytes_sort_keys_and_drop_spaces_whatever_the_dict_order() -> None:
    reordered = dict(reversed(list(DOCUMENT.items())))
    assert canonical_bytes(DOCUMENT) == canonical_bytes(reordered)
    assert canonical_bytes(DOCUMENT).startswith(b'{"a":1,"b":"\xc3\xa9","policies":')


def test_signed_bundle_verifies_with_the_published_key_and_its_etag_is_the_sha256() -> None:
    key = BundleKey.from_seed(SEED)
    bundle = sign_bundle(DOCUMENT, key)
    published = public_key_wire(key)
    raw = Ed25519PublicKey.from_public_bytes(_unb64(published.public_key))
    raw.verify(_unb64(bundle.signature), bundle.body)
    pem = load_pem_public_key(published.public_key_pem.encode())
    assert isinstance(pem, Ed25519PublicKey)
    pem.verify(_unb64(bundle.signature), bundle.body)
    assert bundle.etag == f'"{hashlib.sha256(bundle.body).hexdigest()}"'
    assert (bundle.key_id, published.key_id, bundle.revision) == (key.key_id, key.key_id, 3)
    with pytest.raises(InvalidSignature):
        raw.verify(_unb64(bundle.signature), bundle.body.replace(b"caracal", b"caracaL"))


def test_the_same_document_gives_the_same_bytes_and_signature() -> None:
    """Ed25519 is deterministic: one version, one byte string, one signature."""
    first, second = (
        sign_bundle(DOCUMENT, BundleKey.from_seed(SEED)),
        sign_bundle(dict(DOCUMENT), BundleKey.from_seed(SEED)),
    )
    assert (first.body, first.signature) == (second.body, second.signature)
    assert json.loads(first.body) == DOCUMENT


def test_without_a_key_bundles_are_503_naming_the_variable() -> None:
    with pytest.raises(Unavailable) as raised:
        require_key(None)
    assert raised.value.code == "bundle_signing_key_missing"
    assert "CARACAL_BUNDLE_SIGNING_KEY" in str(raised.value)
    assert "00010203" not in repr(BundleKey.from_seed(SEED))
