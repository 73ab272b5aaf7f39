"""`python -m bench [throughput|latency|idle|api ...]`: start the servers once, run the benchmarks in turn."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

from bench import api, catalogue, idle, latency, policies, throughput
from bench.common import BenchEnv, BenchError, bench_env, say

BENCHMARKS: dict[str, Callable[[BenchEnv], Awaitable[list[str]]]] = {
    "throughput": throughput.run,
    "latency": latency.run,
    "idle": idle.run,
    "api": api.run,
    "catalogue": catalogue.run,
    "policies": policies.run,
}
USAGE = f"usage: python -m bench [{'|'.join(BENCHMARKS)} ...]  (all of them, in this order, by default)"


async def _run(names: list[str]) -> int:
    summary: list[str] = []
    failed: list[str] = []
    async with bench_env() as bench:
        for name in names:
            say(f"===== {name} =====")
            try:
                summary += [f"{name}: {line}" for line in await BENCHMARKS[name](bench)]
            except BenchError as exc:
                failed.append(name)
                say(f"{name}: FAILED: {exc}")
    print("\n===== summary =====", *summary, sep="\n", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(USAGE)
        return 0
    unknown = [name for name in argv if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {', '.join(unknown)}; {USAGE}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(_run(argv or list(BENCHMARKS)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
