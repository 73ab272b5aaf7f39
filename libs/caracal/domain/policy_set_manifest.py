"""Policy-set manifests: their canonical JSON and hash (what an STS compares), and the contract check.

The contract check (CONTRACT.md §4.6) runs on version creation, simulation and activation; its
`detail` strings are the contract's, word for word, so a client matching on them keeps working.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSIONS = ("2026-03-16", "2026-05-20")
DEFAULT_SCHEMA_VERSION = "2026-05-20"
INPUT_SCHEMA_VERSION = "2026-05-20"
MAX_ENTRIES = 256

# A Rego check: None when the module is valid, else the contract's code (`must_define_result_rule`).
RegoCheck = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class ReferencedVersion:
    """A policy version a manifest names, as the check needs it."""

    id: str
    schema_version: str
    content: str


def canonical_manifest(policy_version_ids: Sequence[str]) -> str:
    """`[{"policy_version_id":"…"},…]` with no spaces, as the original writes `manifest_json`.

    Non-ASCII stays as it is (JSON.stringify does not escape it), so the hash is the original's.
    """
    entries = [{"policy_version_id": version_id} for version_id in policy_version_ids]
    return json.dumps(entries, separators=(",", ":"), ensure_ascii=False)


def manifest_sha256(canonical: str) -> str:
    """Lowercase hex SHA-256 of exactly the canonical text (the STS skips a reload when it matches)."""
    return hashlib.sha256(canonical.encode()).hexdigest()


def manifest_ids(manifest_json: Any) -> list[str]:
    """The policy version ids of a stored manifest, in order (entries the STS could not read dropped)."""
    if not isinstance(manifest_json, list):
        return []
    return [
        str(entry["policy_version_id"])
        for entry in manifest_json
        if isinstance(entry, dict) and isinstance(entry.get("policy_version_id"), str)
    ]


def schema_violation(schema_version: str) -> str | None:
    return None if schema_version in SCHEMA_VERSIONS else f"unsupported_schema_version:{schema_version}"


def shape_violation(ids: Sequence[str]) -> str | None:
    """The rules on the list itself, before any version is read."""
    if not ids:
        return "policy set manifest must reference at least one policy version"
    if len(ids) > MAX_ENTRIES:
        return f"policy set manifest exceeds maximum of {MAX_ENTRIES} entries"
    if len(set(ids)) != len(ids):
        return "policy set manifest contains duplicate policy_version_id entries"
    return None


def _rego_detail(version_id: str, code: str) -> str:
    if code == "must_use_package_caracal_authz":
        return f"policy version {version_id} must use package caracal.authz"
    if code == "must_define_result_rule":
        return f"policy version {version_id} must emit data.caracal.authz.result"
    return f"policy version {version_id} failed validation: {code}"


async def version_violation(version: ReferencedVersion, set_schema: str, check_rego: RegoCheck) -> str | None:
    if version.schema_version != set_schema:
        return (
            f"policy version {version.id} schema {version.schema_version}"
            f" does not match policy set schema {set_schema}"
        )
    schema = schema_violation(version.schema_version)
    if schema is not None:
        return f"policy version {version.id} failed schema validation: {schema}"
    code = await check_rego(version.content)
    return None if code is None else _rego_detail(version.id, code)


async def contract_violation(
    ids: Sequence[str],
    set_schema: str,
    found: Mapping[str, ReferencedVersion],
    check_rego: RegoCheck,
) -> str | None:
    """The first rule the manifest breaks, as the contract's `detail`; None when it passes.

    `found` holds the named versions that exist in the set's zone: another zone's version reads as
    missing, so a token of one zone learns nothing of another zone's ids.
    """
    failure = schema_violation(set_schema) or shape_violation(ids)
    if failure is not None:
        return failure
    if any(version_id not in found for version_id in ids):
        return "policy set manifest references missing policy versions"
    for version_id in ids:
        failure = await version_violation(found[version_id], set_schema, check_rego)
        if failure is not None:
            return failure
    return None
