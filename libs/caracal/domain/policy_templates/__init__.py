"""The policy templates of GET /v1/policy-templates: the contract's nine ids, in its order.

Each is a `package caracal.authz` module in this directory whose `result` is the decision
object (`decision` "allow"/"deny", `evaluation_status`, `determining_policies`, `diagnostics`);
each is denied by default, valid under our own validator and exercised by tests/unit.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from caracal.domain.wire import Resource


class PolicyTemplate(Resource):
    id: str
    name: str
    description: str
    content: str


_TEMPLATES = (
    ("role-based", "Role-based access", "Roles of the principal grant scopes."),
    ("attribute-based", "Attribute-based access", "Principal and resource attributes must match."),
    ("delegation", "Delegated access", "Agents act within the scopes of their delegation edge."),
    ("baseline-scopes", "Baseline: scopes", "Requested scopes are declared by the resource."),
    (
        "baseline-resource-constraints",
        "Baseline: resource constraints",
        "HTTPS resources of the principal's zone, listed actions only.",
    ),
    (
        "baseline-delegation-constraints",
        "Baseline: delegation constraints",
        "Active, shallow delegation edges that only narrow their parent's scopes.",
    ),
    (
        "baseline-session-state",
        "Baseline: session state",
        "The session is active and recently authenticated.",
    ),
    (
        "baseline-step-up-triggers",
        "Baseline: step-up triggers",
        "Sensitive scopes need a satisfied step-up challenge.",
    ),
    ("baseline-rate-limits", "Baseline: rate limits", "At most a set number of requests per window."),
)
TEMPLATE_IDS = tuple(template_id for template_id, _, _ in _TEMPLATES)


@cache
def policy_templates() -> tuple[PolicyTemplate, ...]:
    """Read once per process from the package's .rego files."""
    folder = resources.files(__name__)
    return tuple(
        PolicyTemplate(id=tid, name=name, description=text, content=(folder / f"{tid}.rego").read_text())
        for tid, name, text in _TEMPLATES
    )
