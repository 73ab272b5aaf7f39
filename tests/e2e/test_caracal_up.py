"""`caracal up` (what `make up` runs): embedded servers, three processes, data kept across restarts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caracal.embedded import free_port
from tests.support import Servers

pytestmark = pytest.mark.e2e


class Up:
    """A running `caracal up`, its output collected line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "caracal.cli", "up"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"`caracal up` never printed {text!r}:\n{self.output[-4000:]}")
            time.sleep(0.1)

    def admin_token(self) -> str:
        found = re.search(r"admin token:\s+(\S+)", self.output)
        assert found, self.output
        return found.group(1)

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)


def up_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CARACAL_", "STREAMS_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update({"CARACAL_DATA_DIR": str(data_dir), "PORT": str(port), **extra})
    return env


def request(port: int, method: str, path: str, token: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=json.dumps(body).encode() if body else None,
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    running: list[Up] = []
    yield running
    for up in running:
        if up.process.poll() is None:
            up.interrupt()


def test_make_up_serves_prints_what_to_use_and_keeps_data_across_restarts(
    tmp_path: Path, ups: list[Up]
) -> None:
    """First run generates keys and a token and serves; Ctrl-C stops all; a second run finds the zone."""
    port = free_port()
    first = Up(up_env(tmp_path / "data", port))
    ups.append(first)
    first.wait_for("Caracal control plane is up")
    assert f"http://127.0.0.1:{port}" in first.output
    assert "postgresql://" in first.output
    assert "redis://" in first.output
    assert "CARACAL_KEK: generated into" in first.output
    token = first.admin_token()
    zone = request(port, "POST", "/v1/zones", token, {"name": "Kept"})
    assert first.interrupt() == 0
    assert "stopped" in first.output

    second = Up(up_env(tmp_path / "data", port))
    ups.append(second)
    second.wait_for("Caracal control plane is up")
    assert "CARACAL_KEK: read from" in second.output
    assert second.admin_token() == token
    assert [z["id"] for z in request(port, "GET", "/v1/zones", token)] == [zone["id"]]
    assert second.interrupt() == 0


def test_make_up_uses_the_servers_it_is_given(tmp_path: Path, servers: Servers, ups: list[Up]) -> None:
    """With DATABASE_URL and REDIS_URL set, no embedded server starts and the given ones are used."""
    port = free_port()
    database_url = servers.postgres_url.rpartition("/")[0] + "/caracal_up_given"
    import asyncio

    from tests.conftest import recreate_database

    asyncio.run(recreate_database(servers, "caracal_up_given"))
    up = Up(
        up_env(
            tmp_path / "data",
            port,
            DATABASE_URL=database_url,
            REDIS_URL=servers.redis_url,
            CARACAL_ADMIN_TOKEN="cat_given_token_for_the_test",
        )
    )
    ups.append(up)
    up.wait_for("Caracal control plane is up")
    assert "embedded" not in up.output
    assert "CARACAL_ADMIN_TOKEN: taken from the environment" in up.output
    assert up.admin_token() == "cat_given_token_for_the_test"
    assert request(port, "GET", "/v1/zones", "cat_given_token_for_the_test") == []


@pytest.mark.parametrize(
    ("sig", "news", "last_line"),
    [
        (signal.SIGKILL, "dispatcher was killed by SIGKILL; stopping the rest", None),
        (signal.SIGTERM, "dispatcher exited with code 0; stopping the rest", "dispatcher stopped"),
    ],
)
def test_make_up_says_how_a_service_ended_and_what_it_said_last(
    tmp_path: Path, servers: Servers, ups: list[Up], sig: signal.Signals, news: str, last_line: str | None
) -> None:
    """A service that dies stops `caracal up` (exit 1) with its exit code or signal and its last lines."""
    import asyncio

    from tests.conftest import recreate_database

    name = f"caracal_up_{sig.name.lower()}"
    asyncio.run(recreate_database(servers, name))
    up = Up(
        up_env(
            tmp_path / "data",
            free_port(),
            DATABASE_URL=servers.postgres_url.rpartition("/")[0] + f"/{name}",
            REDIS_URL=servers.redis_url,
        )
    )
    ups.append(up)
    up.wait_for("Caracal control plane is up")
    found = re.search(r"started caracal_dispatcher \(pid (\d+)\)", up.output)
    assert found, up.output
    os.kill(int(found.group(1)), sig)
    assert up.process.wait(timeout=60) == 1
    up.wait_for("==> stopped", timeout=10)
    lines = up.output.splitlines()
    assert f"==> {news}" in lines, up.output[-3000:]
    tail = lines[lines.index(f"==> {news}") + 1 :]
    assert tail[0] == "==> dispatcher's last output:", up.output[-3000:]
    told = tail[1 : tail.index("==> stopping api, dispatcher and reaper")]
    assert told and all(line.startswith("==>     ") for line in told), up.output[-3000:]
    if last_line is not None:
        assert last_line in told[-1], up.output[-3000:]
