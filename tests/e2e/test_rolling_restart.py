"""A rolling restart of two API replicas behind a real nginx, under load, loses no request."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from caracal.db.engine import plain_url
from caracal.embedded import free_port
from caracal_api.__main__ import KEEP_ALIVE_S
from tests.conftest import recreate_database
from tests.e2e.nginx import DEPLOY, Nginx, start_nginx
from tests.support import ADMIN_TOKEN, SERVICE_LOGS, Servers, Service, eventually, service_env, wait_ready

pytestmark = pytest.mark.e2e
CLIENTS = 3
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Load:
    """What the clients saw: every status, every transport failure, and the zones answered 201."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)  # name -> id
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())


async def _client(base_url: str, index: int, load: Load) -> None:
    """POST a zone, GET it back, list zones; until told to stop."""
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=20) as client:
        n = 0
        while not load.stop.is_set():
            n += 1
            name = f"rr-{index}-{n}"
            try:
                created = await client.post("/v1/zones", json={"name": name})
                load.statuses[created.status_code] += 1
                if created.status_code != 201:
                    continue
                load.created[name] = created.json()["id"]
                for path in (f"/v1/zones/{load.created[name]}", "/v1/zones?limit=5"):
                    load.statuses[(await client.get(path)).status_code] += 1
            except httpx.HTTPError as err:
                load.failures.append(f"{name}: {type(err).__name__}: {err}")


def _replica(env: dict[str, str], logdir: Path, port: int, tag: str) -> Service:
    """`caracal api` on a given port (a restarted replica comes back where nginx expects it)."""
    log_path = logdir / f"api-{tag}-{time.monotonic_ns()}.log"
    SERVICE_LOGS.append(log_path)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "caracal_api"],
            env={**env, "PORT": str(port)},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return Service("api", process, log_path, port)


async def _draining_answer(replica: Service, workers: int) -> httpx.Response:
    """SIGTERM `replica`, then ask /ready on a connection opened before it: the answer while draining."""
    async with httpx.AsyncClient(base_url=replica.url, timeout=5) as direct:
        assert (await direct.get("/health")).status_code == 200  # the kept-alive connection
        replica.process.terminate()
        await eventually(lambda: replica.log().count("Shutting down") == workers, "every worker draining")
        return await direct.get("/ready")


async def _restart(replica: Service, env: dict[str, str], logdir: Path, load: Load) -> Service:
    """SIGTERM, wait until it exited (0, within the shutdown timeout), start it again, wait /ready;
    load went on through the other replica meanwhile."""
    before, started = load.answered, time.monotonic()
    ready = await _draining_answer(replica, int(env["CARACAL_API_WORKERS"]))
    assert ready.status_code == 503
    assert ready.json() == {"ok": False, "draining": True}
    assert ready.headers["connection"] == "close"
    # the listener is closed at once (with workers, the supervisor's copy too: else connections
    # would wait in its backlog, never accepted, and be reset when it exits)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=2) as other:
            await other.get(f"{replica.url}/health")
    assert await asyncio.to_thread(replica.process.wait, 15) == 0
    drained = time.monotonic() - started
    assert drained < int(env["CARACAL_SHUTDOWN_TIMEOUT_MS"]) / 1000 + 2, (drained, replica.log()[-3000:])
    assert replica.port is not None
    fresh = _replica(env, logdir, replica.port, "again")
    await asyncio.to_thread(wait_ready, fresh)
    await eventually(lambda: load.answered > before + 20, "requests answered while it restarted")
    return fresh


async def _rows(database_url: str) -> list[str]:
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        return [row["name"] for row in await conn.fetch("SELECT name FROM zones WHERE name LIKE 'rr-%'")]
    finally:
        await conn.close()


async def test_rolling_restart_behind_nginx_answers_every_request_and_writes_each_post_once(
    servers: Servers, logdir: Path, started: list[Service], tmp_path: Path
) -> None:
    env = service_env(await recreate_database(servers, "e2e_rolling"), servers.redis_url)
    # A as compose runs it (a supervisor and its workers), B as one process
    envs = [{**env, "CARACAL_API_WORKERS": "2"}, env]
    replicas = [_replica(e, logdir, free_port(), tag) for e, tag in zip(envs, ("a", "b"), strict=True)]
    started.extend(replicas)
    for replica in replicas:
        await asyncio.to_thread(wait_ready, replica)
    nginx: Nginx = await asyncio.to_thread(start_nginx, tmp_path / "nginx", [r.port or 0 for r in replicas])
    load = Load()
    clients = [asyncio.create_task(_client(nginx.url, index, load)) for index in range(CLIENTS)]
    try:
        await eventually(lambda: load.answered > 30 or bool(load.failures), "load flowing through nginx")
        for index, replica in enumerate(replicas):
            replicas[index] = await _restart(replica, envs[index], logdir, load)
            started.append(replicas[index])
    finally:
        load.stop.set()
        await asyncio.gather(*clients)
        await asyncio.to_thread(nginx.stop)
    assert load.failures == [], load.failures[:5]
    assert set(load.statuses) <= {200, 201}, (load.statuses, nginx.error_log()[-2000:])
    names = await _rows(env["DATABASE_URL"])
    assert len(names) == len(set(names)), "a POST wrote its zone twice"
    assert set(names) == set(load.created), "a zone exists that was not answered 201, or one is missing"


def test_nginx_gives_up_idle_upstream_connections_before_the_api_closes_them() -> None:
    """Whoever closes an idle keep-alive connection first must be nginx (why: deploy/nginx/upstream.conf)."""
    found = re.search(r"^keepalive_timeout (\d+)s;$", (DEPLOY / "upstream.conf").read_text(), re.M)
    assert found, "deploy/nginx/upstream.conf sets no keepalive_timeout"
    assert int(found.group(1)) < KEEP_ALIVE_S
