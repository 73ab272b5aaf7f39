"""/openapi.json tells the truth: schemathesis, every check, over every operation of a live API process.

New routes join the run by being in the document; nothing here names an operation.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import recreate_database
from tests.support import ADMIN_TOKEN, Servers, Service, service_env, start_service, wait_ready

# A bounded, reproducible budget: ~30 cases per operation and phase, the same ones every run.
MAX_EXAMPLES = 30
SEED = 20261124
RUN_TIMEOUT_S = 240
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture
async def live_api(servers: Servers, logdir: Path) -> Iterator[Service]:
    database_url = await recreate_database(servers, "caracal_openapi")
    # the fuzzer's many unauthenticated probes would trip the failed-auth limit and turn 401s into 429s
    env = service_env(
        database_url,
        servers.redis_url,
        CARACAL_API_WORKERS="1",
        LOG_LEVEL="warning",
        ADMIN_AUTH_FAIL_LIMIT_PER_MIN="0",
        API_V1_RATE_LIMIT_PER_MIN="0",
    )
    api = start_service("api", env, logdir, tag="-openapi")
    try:
        wait_ready(api)
        yield api
    finally:
        api.stop()


def schemathesis_run(api: Service, report: Path) -> subprocess.CompletedProcess[str]:
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG)),
        *("run", f"{api.url}/openapi.json"),
        # every check but the ones schemathesis.toml turns off, with the reason for each
        *("--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED)),
        *("--generation-deterministic", "--no-color"),
        *("--workers", "1", "--header", f"Authorization: Bearer {ADMIN_TOKEN}"),
        *("--report", "junit", "--report-junit-path", str(report)),
    ]
    # its cache directory goes beside the report, not into the work tree
    return subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False, cwd=report.parent
    )


def test_every_operation_conforms_to_the_openapi_document(live_api: Service, tmp_path: Path) -> None:
    """All schemathesis checks pass over every operation: no 5xx, no undeclared status, body or header."""
    result = schemathesis_run(live_api, tmp_path / "junit.xml")
    assert result.returncode == 0, f"{result.stdout[-20000:]}\n{result.stderr[-4000:]}"
    assert "No issues found" in result.stdout or "passed" in result.stdout, result.stdout[-4000:]
