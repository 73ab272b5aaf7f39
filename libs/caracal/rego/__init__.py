"""Rego through regopy (rego-cpp), in worker processes: check a policy module, evaluate modules.

    verdict = await rego.check(content)          # RegoCheck: ok + warnings, or code/line/column
    value = await rego.evaluate(modules, input)  # the value of data.caracal.authz.result (None: undefined)

Each API process has one engine (configure() at start, shutdown() at stop; made with defaults on
first use otherwise). See caracal.rego.engine for the process model.
"""

from __future__ import annotations

from collections.abc import Mapping

from caracal.rego.engine import RegoEngine, WorkerLost
from caracal.rego.rules import FORBIDDEN_BUILTINS, PACKAGE, RESULT_RULE
from caracal.rego.verdicts import EvaluationFailed, RegoCheck

RESULT_QUERY = f"data.{PACKAGE}.{RESULT_RULE}"
DEFAULT_MAX_BYTES = 256 * 1024

__all__ = [
    "FORBIDDEN_BUILTINS",
    "PACKAGE",
    "RESULT_QUERY",
    "RESULT_RULE",
    "EvaluationFailed",
    "RegoCheck",
    "RegoEngine",
    "check",
    "configure",
    "evaluate",
    "shutdown",
]

_engine: RegoEngine | None = None
_max_bytes = DEFAULT_MAX_BYTES


def configure(*, workers: int, timeout_ms: int, max_pending: int, max_bytes: int) -> RegoEngine:
    """This process's engine from its settings (replacing, and stopping, any earlier one)."""
    global _engine, _max_bytes
    shutdown()
    _engine = RegoEngine(workers=workers, timeout_ms=timeout_ms, max_pending=max_pending)
    _max_bytes = max_bytes
    return _engine


def engine() -> RegoEngine:
    global _engine
    if _engine is None or _engine.closed:
        _engine = RegoEngine()
    return _engine


def shutdown() -> None:
    """Stop this process's workers (the next call starts new ones)."""
    global _engine
    if _engine is not None:
        _engine.close()
        _engine = None


async def check(content: str) -> RegoCheck:
    """Parse and compile one module and judge it by the contract's rules; never raises for a bad
    module: a module that crashes the interpreter or overruns the time limit is refused too."""
    size = len(content.encode())
    if size > _max_bytes:
        return RegoCheck(
            ok=False, code="policy_too_large", message=f"{size} bytes, at most {_max_bytes} are accepted"
        )
    try:
        status, answer = await engine().check(content)
    except WorkerLost as lost:
        code = "rego_timeout" if lost.timed_out else "rego_crashed"
        return RegoCheck(ok=False, code=code, message=str(lost))
    if status != "ok" or not isinstance(answer, RegoCheck):
        return RegoCheck(ok=False, code="syntax_error", message=str(answer))
    return answer


async def evaluate(modules: Mapping[str, str], value: object, query: str = RESULT_QUERY) -> object:
    """The query's value over `modules` (name -> content) and the input `value` (None: no input).

    None when the value is undefined. EvaluationFailed when the modules do not compile together,
    the evaluation errs, overruns the time limit or crashes the interpreter."""
    try:
        status, answer = await engine().evaluate(modules, value, query)
    except WorkerLost as lost:
        raise EvaluationFailed(str(lost)) from None
    if status != "ok":
        raise EvaluationFailed(str(answer))
    return answer
