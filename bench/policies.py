"""Policy validation and simulation per second through caracal.rego, beside raw regopy in-process.

The subject is a template-sized policy (the role-based template). `validate` is what every policy
write and POST /v1/policies/validate pays: a parse and compile in a worker process, its parse
tree read back, the contract's rules applied. `simulate` is one evaluation of the policy on an
input. Baselines, same run: the same work with regopy called directly in this process (no worker,
no pipe, no parse-tree dump), one call at a time on one core; the workers use CARACAL_REGO_WORKERS
cores, so a ratio above 1 per worker means the isolation costs nothing a core could have done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import regopy

from bench.common import BenchEnv, ratio, say
from caracal import rego
from caracal.domain.policy_templates import policy_templates

SECONDS = 4.0
WORKERS = 2
CALLERS = 4  # twice the workers: one call always waiting while another runs
INPUT = {"principal": {"labels": ["editor"]}, "context": {"requested_scopes": ["read", "write"]}}


def _template() -> str:
    return next(t.content for t in policy_templates() if t.id == "role-based")


def _raw_validate(content: str) -> None:
    interpreter = regopy.Interpreter()
    interpreter.add_module("policy.rego", content)
    interpreter.build(None, ["caracal/authz/result"])


def _raw_simulate(content: str) -> None:
    interpreter = regopy.Interpreter()
    interpreter.add_module("policy.rego", content)
    interpreter.set_input(regopy.Input(INPUT))
    interpreter.query(rego.RESULT_QUERY)


def _raw_rate(call: Callable[[str], None], content: str) -> float:
    done, deadline = 0, time.perf_counter() + SECONDS
    while time.perf_counter() < deadline:
        call(content)
        done += 1
    return done / SECONDS


async def _engine_rate(call: Callable[[], Awaitable[object]]) -> float:
    done = 0
    deadline = time.perf_counter() + SECONDS

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    return done / SECONDS


async def run(bench: BenchEnv) -> list[str]:
    del bench  # in-process: no servers needed
    content = _template()
    rego.configure(workers=WORKERS, timeout_ms=5000, max_pending=64, max_bytes=256 * 1024)
    try:
        verdict = await rego.check(content)  # starts the workers
        assert verdict.ok, verdict
        assert (await rego.evaluate({"p.rego": content}, INPUT)) is not None
        validate = await _engine_rate(lambda: rego.check(content))
        simulate = await _engine_rate(lambda: rego.evaluate({"p.rego": content}, INPUT))
    finally:
        rego.shutdown()
    raw_validate = _raw_rate(_raw_validate, content)
    raw_simulate = _raw_rate(_raw_simulate, content)
    lines = [
        f"validate {validate:.0f}/s with {WORKERS} workers vs raw regopy parse+compile "
        f"{raw_validate:.0f}/s on one core ({ratio(validate, raw_validate)})",
        f"simulate {simulate:.0f}/s with {WORKERS} workers vs raw regopy evaluation "
        f"{raw_simulate:.0f}/s on one core ({ratio(simulate, raw_simulate)})",
    ]
    for line in lines:
        say(line)
    return lines
