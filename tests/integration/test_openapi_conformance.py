"""/openapi.json tells the truth: schemathesis, every check and every phase (the stateful one walks the
document's links), over every operation of a live API process.

New routes join the run by being in the document; nothing here names an operation. `make fuzz` is the
same run with a far larger budget and a fresh seed (tests/fuzz).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import recreate_database
from tests.fuzz import API_ENV, schemathesis_command, schemathesis_env
from tests.support import Servers, Service, service_env, start_service, wait_ready

# A bounded, reproducible budget: ~30 cases per operation and phase, the same ones every run.
MAX_EXAMPLES = 30
SEED = 20261124
# the stateful phase follows at least this many of the document's links (~14 in a typical run)
MIN_LINKS_FOLLOWED = 5
RUN_TIMEOUT_S = 600  # ~2 min on an idle 2-core machine; a loaded one takes far longer


@pytest.fixture
async def live_api(servers: Servers, logdir: Path) -> Iterator[Service]:
    database_url = await recreate_database(servers, "caracal_openapi")
    env = service_env(database_url, servers.redis_url, **API_ENV)
    api = start_service("api", env, logdir, tag="-openapi")
    try:
        wait_ready(api)
        yield api
    finally:
        api.stop()


def schemathesis_run(api: Service, workdir: Path) -> subprocess.CompletedProcess[str]:
    command = schemathesis_command(api.url, workdir, max_examples=MAX_EXAMPLES, seed=SEED)
    # its cache directory goes beside the report, not into the work tree
    return subprocess.run(
        command,
        env=schemathesis_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
        cwd=workdir,
    )


def test_every_operation_conforms_to_the_openapi_document(live_api: Service, tmp_path: Path) -> None:
    """All checks pass in every phase: no 5xx, no undeclared status, body or header, no negative data
    accepted, and the stateful phase ran scenarios along the document's links."""
    result = schemathesis_run(live_api, tmp_path)
    assert result.returncode == 0, f"{result.stdout[-20000:]}\n{result.stderr[-4000:]}"
    assert "No issues found" in result.stdout or "passed" in result.stdout, result.stdout[-4000:]
    followed = re.search(r"API Links:\s+(\d+) covered", result.stdout)
    assert followed is not None and int(followed.group(1)) >= MIN_LINKS_FOLLOWED, result.stdout[-4000:]
