"""`make fuzz`: the conformance run with a much larger budget, against its own servers and API.

python -m tests.fuzz [MAX_EXAMPLES [SEED]] (or FUZZ_EXAMPLES, FUZZ_SEED; FUZZ_MAX_TIME bounds the run
in seconds); schemathesis prints its progress per phase and operation; the exit status is its own
(non-zero on any failure).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzz import API_ENV, schemathesis_command, schemathesis_env
from tests.support import real_servers, service_env, start_service, wait_ready

DEFAULT_EXAMPLES = 500


def fuzz(api_url: str, workdir: Path, max_examples: int, seed: int) -> int:
    print(f"==> schemathesis: {max_examples} examples per operation, seed {seed}", flush=True)
    max_time = int(os.environ.get("FUZZ_MAX_TIME", "0")) or None
    command = schemathesis_command(
        api_url, workdir, max_examples=max_examples, seed=seed, fixed=False, max_time_s=max_time
    )
    return subprocess.run(command, env=schemathesis_env(), check=False, cwd=workdir).returncode


def main(argv: list[str]) -> int:
    max_examples = int(argv[0] if argv else os.environ.get("FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
    seed = int(argv[1] if len(argv) > 1 else os.environ.get("FUZZ_SEED", time.time_ns() % 2**31))
    # thousands of generated rows: never into servers DATABASE_URL/REDIS_URL name, always its own
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="caracal-fuzz-") as tmp, real_servers(Path(tmp)) as servers:
        env = service_env(servers.postgres_url, servers.redis_url, **API_ENV)
        api = start_service("api", env, Path(tmp))
        try:
            wait_ready(api)
            code = fuzz(api.url, Path(tmp), max_examples, seed)
        finally:
            api.stop()
        if code != 0:
            print(f"==> fuzz failed (replay with seed {seed}); the API's log ends:\n{api.log()[-6000:]}")
        return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
