"""The Rego engine as policy sets use it: a module's contract code (cached), a set's evaluation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from caracal import rego

ENTRYPOINT = rego.RESULT_QUERY

# A module's verdict depends only on its text (and this build's validator): versions are
# immutable, so activation and simulation re-check a manifest without re-parsing each module.
_CHECKED: dict[str, str | None] = {}
CHECK_CACHE_MAX = 4096
_TRANSIENT = ("rego_timeout", "rego_crashed")  # a verdict about this run, not about the module


async def rego_code(content: str) -> str | None:
    """None when the module passes the contract's Rego rules, else the contract's code."""
    key = hashlib.sha256(content.encode()).hexdigest()
    if key in _CHECKED:
        return _CHECKED[key]
    verdict = await rego.check(content)
    code = None if verdict.ok else verdict.code or "invalid_rego"
    if code in _TRANSIENT:
        return code
    if len(_CHECKED) >= CHECK_CACHE_MAX:
        _CHECKED.clear()  # rare; refilling costs one check per module
    _CHECKED[key] = code
    return code


@dataclass(frozen=True, slots=True)
class Evaluation:
    status: Literal["executed", "failed"]
    reason: str
    result: dict[str, Any] | None = None


async def evaluate_result(modules: list[str], given: dict[str, Any]) -> Evaluation:
    """`data.caracal.authz.result` over the modules, as the STS evaluates it."""
    named = {f"policy_{n}.rego": content for n, content in enumerate(modules)}
    try:
        value = await rego.evaluate(named, given, ENTRYPOINT)
    except rego.EvaluationFailed as exc:
        return Evaluation("failed", f"evaluation failed: {exc}")
    if value is None:
        return Evaluation("executed", f"{ENTRYPOINT} is undefined for this input")
    if not isinstance(value, dict):
        return Evaluation("failed", f"{ENTRYPOINT} is not an object")
    return Evaluation("executed", f"evaluated in-process over {len(modules)} policies", value)
