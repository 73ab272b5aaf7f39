"""Schemathesis over /openapi.json of a live API process: the suite's bounded run
(tests/integration/test_openapi_conformance.py) and `make fuzz`'s long one share this command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.support import ADMIN_TOKEN

CONFIG = Path(__file__).parent.parent / "integration" / "schemathesis.toml"
HOOKS = Path(__file__).with_name("hooks.py")
# the fuzzer's many unauthenticated probes would trip the failed-auth limit and turn 401s into 429s
API_ENV = {
    "CARACAL_API_WORKERS": "1",
    "LOG_LEVEL": "warning",
    "ADMIN_AUTH_FAIL_LIMIT_PER_MIN": "0",
    "API_V1_RATE_LIMIT_PER_MIN": "0",
}


def schemathesis_command(
    api_url: str,
    report_dir: Path,
    *,
    max_examples: int,
    seed: int,
    fixed: bool = True,
    max_time_s: int | None = None,
) -> list[str]:
    """Every phase (stateful included) and every check but the ones schemathesis.toml turns off;
    `fixed`: the same cases every run (the suite's), else the ones `seed` draws (`make fuzz`);
    `max_time_s`: a time budget the fuzzing and stateful phases repeat until they have spent."""
    return [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG)),
        *("run", f"{api_url}/openapi.json"),
        *("--max-examples", str(max_examples), "--seed", str(seed)),
        *(("--generation-deterministic",) if fixed else ()),
        *(("--max-time", str(max_time_s)) if max_time_s else ()),
        "--no-color",
        *("--workers", "1", "--header", f"Authorization: Bearer {ADMIN_TOKEN}"),
        *("--report", "junit", "--report-dir", str(report_dir)),
    ]


def schemathesis_env() -> dict[str, str]:
    """Our checks (tests/fuzz/hooks.py) beside schemathesis' own."""
    return {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
