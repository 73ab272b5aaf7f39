"""Policy-set manifests: the canonical text and hash an STS compares, and the contract check's order."""

from __future__ import annotations

import hashlib
import json

from caracal.domain.policy_set_manifest import (
    ReferencedVersion,
    canonical_manifest,
    contract_violation,
    manifest_ids,
    manifest_sha256,
)

SCHEMA = "2026-05-20"


async def _valid(_content: str) -> str | None:
    return None


async def _code(content: str) -> str | None:
    return content or None  # the test's modules are their own verdicts


def _found(*versions: ReferencedVersion) -> dict[str, ReferencedVersion]:
    return {version.id: version for version in versions}


def test_canonical_manifest_is_compact_json_in_the_given_order() -> None:
    """`[{"policy_version_id":"…"},…]`, no spaces, order kept: the original's manifest_json text."""
    text = canonical_manifest(["b", "a"])
    assert text == '[{"policy_version_id":"b"},{"policy_version_id":"a"}]'
    assert json.loads(text) == [{"policy_version_id": "b"}, {"policy_version_id": "a"}]


def test_manifest_sha256_is_lowercase_hex_of_exactly_the_canonical_text() -> None:
    text = canonical_manifest(["0198a0c4-0000-7000-8000-000000000001"])
    assert manifest_sha256(text) == hashlib.sha256(text.encode()).hexdigest()
    assert manifest_sha256(text) == manifest_sha256(text).lower() and len(manifest_sha256(text)) == 64


def test_non_ascii_ids_stay_unescaped_as_json_stringify_writes_them() -> None:
    assert canonical_manifest(["é"]) == '[{"policy_version_id":"é"}]'


def test_manifest_ids_read_a_stored_manifest_and_skip_what_is_not_an_entry() -> None:
    stored = [{"policy_version_id": "a"}, {"other": 1}, "x", {"policy_version_id": "b"}]
    assert manifest_ids(stored) == ["a", "b"]
    assert manifest_ids({"policy_version_id": "a"}) == []


async def test_contract_check_answers_the_contracts_details_in_its_order() -> None:
    """Schema, then the list's shape, then missing versions, then each version in manifest order."""
    ok = ReferencedVersion("a", SCHEMA, "")
    assert await contract_violation(["a"], SCHEMA, _found(ok), _valid) is None
    assert await contract_violation(["a"], "2020-01-01", _found(ok), _valid) == (
        "unsupported_schema_version:2020-01-01"
    )
    assert await contract_violation([], SCHEMA, {}, _valid) == (
        "policy set manifest must reference at least one policy version"
    )
    assert await contract_violation(["a"] * 257, SCHEMA, _found(ok), _valid) == (
        "policy set manifest exceeds maximum of 256 entries"
    )
    assert await contract_violation(["a", "a"], SCHEMA, _found(ok), _valid) == (
        "policy set manifest contains duplicate policy_version_id entries"
    )
    assert await contract_violation(["a", "gone"], SCHEMA, _found(ok), _valid) == (
        "policy set manifest references missing policy versions"
    )


async def test_contract_check_names_the_first_failing_version() -> None:
    old = ReferencedVersion("old", "2026-03-16", "")
    package = ReferencedVersion("pkg", SCHEMA, "must_use_package_caracal_authz")
    result = ReferencedVersion("res", SCHEMA, "must_define_result_rule")
    other = ReferencedVersion("oth", SCHEMA, "forbidden_builtin:http.send")
    found = _found(old, package, result, other)
    assert await contract_violation(["old", "pkg"], SCHEMA, found, _code) == (
        "policy version old schema 2026-03-16 does not match policy set schema 2026-05-20"
    )
    assert await contract_violation(["pkg", "old"], SCHEMA, found, _code) == (
        "policy version pkg must use package caracal.authz"
    )
    assert await contract_violation(["res"], SCHEMA, found, _code) == (
        "policy version res must emit data.caracal.authz.result"
    )
    assert await contract_violation(["oth"], SCHEMA, found, _code) == (
        "policy version oth failed validation: forbidden_builtin:http.send"
    )
