"""Signed policy bundles: one policy-set version as deterministic bytes, signed with Ed25519.

The format is written down in docs/bundles.md. The same version always gives the same bytes (the
rows are immutable and the encoding is canonical), so its SHA-256 is its ETag and a policy engine
can poll cheaply with If-None-Match.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.domain.policy_set_manifest import INPUT_SCHEMA_VERSION, manifest_ids
from caracal.domain.wire import Resource
from caracal.errors import NotFound, Unavailable
from caracal.timefmt import iso_ms

BUNDLE_FORMAT = "caracal.policy-bundle.v1"
SIGNATURE_ALGORITHM = "Ed25519"
MEDIA_TYPE = "application/vnd.caracal.policy-bundle+json"
ENTRYPOINT = "data.caracal.authz.result"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class BundleKey:
    """The service's bundle-signing key (CARACAL_BUNDLE_SIGNING_KEY, a 32-byte Ed25519 seed)."""

    private: Ed25519PrivateKey
    public_raw: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> BundleKey:
        private = Ed25519PrivateKey.from_private_bytes(seed)
        return cls(private, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    @property
    def key_id(self) -> str:
        """Names the key, so an engine holding several (a rotation) knows which one verifies."""
        return hashlib.sha256(self.public_raw).hexdigest()[:16]

    def sign(self, payload: bytes) -> str:
        return b64url(self.private.sign(payload))

    def __repr__(self) -> str:
        return f"BundleKey(key_id={self.key_id})"  # never the seed


def require_key(seed: bytes | None) -> BundleKey:
    if seed is None:
        raise Unavailable(
            "bundle_signing_key_missing",
            "CARACAL_BUNDLE_SIGNING_KEY is not set: this API cannot sign policy bundles",
        )
    return BundleKey.from_seed(seed)


class BundlePublicKey(Resource):
    algorithm: str
    key_id: str
    public_key: str  # base64url (no padding) of the raw 32-byte key
    public_key_pem: str


def public_key_wire(key: BundleKey) -> BundlePublicKey:
    pem = Ed25519PublicKey.from_public_bytes(key.public_raw).public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    return BundlePublicKey(SIGNATURE_ALGORITHM, key.key_id, b64url(key.public_raw), pem.decode())


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: one byte string per document."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class BundlePolicy(Resource):
    policy_version_id: str
    policy_id: str
    content_sha256: str
    content: str


class BundleManifestEntry(Resource):
    policy_version_id: str


class PolicyBundle(Resource):
    """What the bundle bytes decode to (the OpenAPI document's description of them)."""

    format: str
    zone_id: str
    policy_set_id: str
    policy_set_version_id: str
    revision: int
    schema_version: str
    input_schema_version: str
    entrypoint: str
    manifest: list[BundleManifestEntry]
    manifest_sha256: str
    created_at: str
    policies: list[BundlePolicy]


@dataclass(frozen=True, slots=True)
class SignedBundle:
    body: bytes
    sha256: str
    signature: str
    key_id: str
    revision: int

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'  # the form of caracal.etags: the quoted hex SHA-256 of the bytes


def sign_bundle(document: dict[str, Any], key: BundleKey) -> SignedBundle:
    body = canonical_bytes(document)
    digest = hashlib.sha256(body).hexdigest()
    return SignedBundle(body, digest, key.sign(body), key.key_id, int(document["revision"]))


# The version, and every policy version its manifest names (in this zone), in one read.
_BUNDLE = text(
    """
    SELECT v.id, v.policy_set_id, v.version, v.manifest_json, v.manifest_sha256, v.schema_version,
           v.created_at, s.zone_id,
           (SELECT coalesce(json_agg(json_build_object(
                       'policy_version_id', pv.id, 'policy_id', pv.policy_id,
                       'content_sha256', pv.content_sha256, 'content', pv.content)), '[]'::json)
              FROM policy_versions pv JOIN policies p ON p.id = pv.policy_id
             WHERE p.zone_id = s.zone_id
               AND pv.id IN (SELECT e ->> 'policy_version_id' FROM jsonb_array_elements(v.manifest_json) e)
           ) AS policies
      FROM policy_set_versions v JOIN policy_sets s ON s.id = v.policy_set_id
     WHERE v.id = :version_id AND v.policy_set_id = :set_id AND s.zone_id = :zone_id
       AND s.archived_at IS NULL
    """
)


def bundle_document(row: Any) -> dict[str, Any]:
    """The bundle's content (docs/bundles.md): policies in manifest order, the version as revision."""
    ids = manifest_ids(row.manifest_json)
    by_id = {policy["policy_version_id"]: policy for policy in row.policies}
    return {
        "format": BUNDLE_FORMAT,
        "zone_id": row.zone_id,
        "policy_set_id": row.policy_set_id,
        "policy_set_version_id": row.id,
        "revision": row.version,
        "schema_version": row.schema_version,
        "input_schema_version": INPUT_SCHEMA_VERSION,
        "entrypoint": ENTRYPOINT,
        "manifest": [{"policy_version_id": version_id} for version_id in ids],
        "manifest_sha256": row.manifest_sha256,
        "created_at": iso_ms(row.created_at),
        "policies": [by_id[version_id] for version_id in ids if version_id in by_id],
    }


async def read_bundle(
    conn: AsyncConnection, zone_id: str, set_id: str, version_id: str, key: BundleKey
) -> SignedBundle:
    found = await conn.execute(_BUNDLE, {"zone_id": zone_id, "set_id": set_id, "version_id": version_id})
    row = found.first()
    if row is None:
        raise NotFound(
            "policy_set_version_not_found", f"version {version_id} of policy set {set_id} does not exist"
        )
    return sign_bundle(bundle_document(row), key)
