"""Simulation: a policy-set version evaluated in-process by the Rego engine, against a given input.

The original forwarded the input to the STS over HTTP; here the version's modules are evaluated
by regopy (in the engine's worker processes) and the real `data.caracal.authz.result` comes back.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.domain.policy_set_manifest import INPUT_SCHEMA_VERSION
from caracal.domain.policy_set_rego import Evaluation, evaluate_result
from caracal.domain.policy_set_versions import CheckedVersion, checked_version
from caracal.domain.wire import LenientBody, Name, Resource

UNSET = msgspec.UNSET


class SimulationRequest(LenientBody):
    version_id: Name
    input: dict[str, Any] | msgspec.UnsetType = UNSET


class Explanation(Resource):
    evaluation: Literal["not_executed", "failed", "executed"]
    reason: str
    decision: str | msgspec.UnsetType = UNSET
    policy_set_version_id: str | msgspec.UnsetType = UNSET
    manifest_sha256: str | msgspec.UnsetType = UNSET


class Simulation(Resource):
    dry_run: bool
    would_activate: bool
    policy_set_id: str
    version_id: str
    schema_version: str
    input_schema_version: str
    manifest_sha256: str
    policies: list[str]
    warnings: list[str]
    explanation: Explanation
    result: dict[str, Any] | None


def input_warnings(given: dict[str, Any], zone_id: str) -> list[str]:
    """What makes an input unlike the STS's, in the contract's order."""
    warnings = []
    schema = given.get("schema_version")
    if schema is not None and schema != INPUT_SCHEMA_VERSION:
        warnings.append(f"input_schema_mismatch:{schema}")
    principal = given.get("principal")
    if not isinstance(principal, dict) or principal.get("zone_id") != zone_id:
        warnings.append("principal_zone_mismatch")
    if given.get("resource") is None:
        warnings.append("missing_resource")
    if given.get("action") in (None, ""):
        warnings.append("missing_action")
    if not isinstance(given.get("context"), dict):
        warnings.append("missing_context")
    return warnings


def _explanation(version: CheckedVersion, outcome: Evaluation | None) -> Explanation:
    if outcome is None:
        return Explanation(evaluation="not_executed", reason="no input was given to evaluate")
    decision = outcome.result.get("decision") if isinstance(outcome.result, dict) else None
    return Explanation(
        evaluation=outcome.status,
        reason=outcome.reason,
        decision=decision if isinstance(decision, str) else UNSET,
        policy_set_version_id=version.id,
        manifest_sha256=version.manifest_sha256,
    )


async def simulate(
    conn: AsyncConnection, zone_id: str, set_id: str, data: SimulationRequest
) -> tuple[CheckedVersion, list[str]]:
    """The checked version and the input's warnings (the read); evaluation follows without a connection."""
    version = await checked_version(conn, zone_id, set_id, data.version_id, "version_not_found")
    warnings = input_warnings(data.input, zone_id) if isinstance(data.input, dict) else []
    return version, warnings


async def simulation(
    set_id: str, version: CheckedVersion, warnings: list[str], data: SimulationRequest
) -> Simulation:
    outcome = None
    if isinstance(data.input, dict):
        outcome = await evaluate_result(
            [version.contents[pid] for pid in version.policy_version_ids], data.input
        )
    return Simulation(
        dry_run=True,
        would_activate=not warnings,
        policy_set_id=set_id,
        version_id=version.id,
        schema_version=version.schema_version,
        input_schema_version=INPUT_SCHEMA_VERSION,
        manifest_sha256=version.manifest_sha256,
        policies=version.policy_version_ids,
        warnings=warnings,
        explanation=_explanation(version, outcome),
        result=outcome.result if outcome is not None and outcome.status == "executed" else None,
    )
