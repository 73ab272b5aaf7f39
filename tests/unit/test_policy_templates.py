"""Each policy template, evaluated by regopy on inputs it should allow and inputs it should deny."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from caracal import rego
from caracal.domain.policy_templates import TEMPLATE_IDS, policy_templates


@pytest_asyncio.fixture(autouse=True)
async def engine() -> AsyncIterator[None]:
    rego.configure(workers=1, timeout_ms=5000, max_pending=8, max_bytes=256 * 1024)
    yield
    rego.shutdown()


def scopes(*requested: str, **context: Any) -> dict[str, Any]:
    return {"requested_scopes": list(requested), **context}


EDGE = {"id": "e1", "scopes": ["read", "write"], "resource_id": "r1", "status": "active", "depth": 1}
RESOURCE = {"id": "r1", "zone_id": "z1", "identifier": "https://api.example.com", "scopes": ["read", "write"]}
CASES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
    "role-based": (
        [{"principal": {"labels": ["editor"]}, "context": scopes("read", "write")}],
        [
            {"principal": {"labels": ["viewer"]}, "context": scopes("write")},
            {"principal": {"labels": ["editor"]}, "context": scopes()},
            {"principal": {}, "context": scopes("read")},
        ],
    ),
    "attribute-based": (
        [
            {
                "principal": {"attributes": {"department": "risk", "clearance": 3}},
                "resource": {"scopes": ["read"], "attributes": {"department": "risk", "sensitivity": 2}},
                "context": scopes("read"),
            }
        ],
        [
            {
                "principal": {"attributes": {"department": "sales", "clearance": 3}},
                "resource": {"scopes": ["read"], "attributes": {"department": "risk", "sensitivity": 2}},
                "context": scopes("read"),
            },
            {
                "principal": {"attributes": {"department": "risk", "clearance": 1}},
                "resource": {"scopes": ["read"], "attributes": {"department": "risk", "sensitivity": 2}},
                "context": scopes("read"),
            },
        ],
    ),
    "delegation": (
        [{"delegation_edge": EDGE, "resource": RESOURCE, "context": scopes("read", agent_session_id="a1")}],
        [
            {
                "delegation_edge": EDGE,
                "resource": RESOURCE,
                "context": scopes("admin", agent_session_id="a1"),
            },
            {"delegation_edge": EDGE, "resource": RESOURCE, "context": scopes("read")},
            {
                "delegation_edge": EDGE,
                "resource": {**RESOURCE, "id": "r2"},
                "context": scopes("read", agent_session_id="a1"),
            },
        ],
    ),
    "baseline-scopes": (
        [{"resource": RESOURCE, "context": scopes("read")}],
        [{"resource": RESOURCE, "context": scopes("delete")}, {"resource": RESOURCE, "context": scopes()}],
    ),
    "baseline-resource-constraints": (
        [{"principal": {"zone_id": "z1"}, "resource": RESOURCE, "action": "read", "context": scopes("read")}],
        [
            {
                "principal": {"zone_id": "z2"},
                "resource": RESOURCE,
                "action": "read",
                "context": scopes("read"),
            },
            {
                "principal": {"zone_id": "z1"},
                "resource": RESOURCE,
                "action": "drop",
                "context": scopes("read"),
            },
            {
                "principal": {"zone_id": "z1"},
                "resource": {**RESOURCE, "identifier": "http://plain.example.com"},
                "action": "read",
                "context": scopes("read"),
            },
        ],
    ),
    "baseline-delegation-constraints": (
        [{"delegation_edge": {**EDGE, "parent_scopes": ["read", "write", "x"]}, "context": scopes("read")}],
        [
            {"delegation_edge": {**EDGE, "depth": 4}, "context": scopes("read")},
            {"delegation_edge": {**EDGE, "parent_scopes": ["read"]}, "context": scopes("read")},
            {"delegation_edge": {**EDGE, "status": "revoked"}, "context": scopes("read")},
        ],
    ),
    "baseline-session-state": (
        [{"context": scopes("read", session={"status": "active", "age_seconds": 60})}],
        [
            {"context": scopes("read", session={"status": "revoked", "age_seconds": 60})},
            {"context": scopes("read", session={"status": "active", "age_seconds": 7200})},
        ],
    ),
    "baseline-step-up-triggers": (
        [
            {"context": scopes("read")},
            {"context": scopes("admin", step_up={"satisfied": True})},
        ],
        [{"context": scopes("admin")}, {"context": scopes("secrets:read", step_up={"satisfied": False})}],
    ),
    "baseline-rate-limits": (
        [{"context": scopes("read", rate={"requests_in_window": 10})}],
        [
            {"context": scopes("read", rate={"requests_in_window": 600})},
            {"context": scopes("export", rate={"requests_in_window": 595})},
        ],
    ),
}


def test_every_template_has_cases() -> None:
    assert list(CASES) == list(TEMPLATE_IDS)


@pytest.mark.parametrize("template", policy_templates(), ids=lambda t: t.id)
async def test_template_allows_and_denies_what_it_says(template: Any) -> None:
    """Valid under our validator without warnings; result.decision follows the inputs."""
    verdict = await rego.check(template.content)
    assert verdict.ok and verdict.warnings == (), verdict
    allowed, denied = CASES[template.id]
    modules = {f"{template.id}.rego": template.content}
    for value in allowed:
        result = await rego.evaluate(modules, value)
        assert isinstance(result, dict) and result["decision"] == "allow", (value, result)
        assert result["evaluation_status"] == "complete"
    for value in [*denied, {}]:
        result = await rego.evaluate(modules, value)
        assert isinstance(result, dict) and result["decision"] == "deny", (value, result)
