"""No secret reaches a log: the three processes started at debug level, their output scanned."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from tests.conftest import recreate_database
from tests.support import AUDIT_KEY_HEX, HMAC_KEY_HEX, KEK, Servers, service_env, start_service, wait_ready

pytestmark = pytest.mark.e2e


async def test_processes_started_at_debug_level_log_no_secret(servers: Servers, logdir: Path) -> None:
    """Admin token, KEKs, signing key, metrics bearer and the database password appear in no log."""
    url = await recreate_database(servers, "e2e_secrets")
    password = "db-pw-" + secrets.token_hex(8)  # the embedded server trusts local users: any works
    with_password = url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@", 1)
    assert password in with_password
    admin_token = "cat_secret_" + secrets.token_urlsafe(24)
    zone_kek = secrets.token_hex(32)
    bearer = "bearer-" + secrets.token_hex(8)
    env = service_env(
        with_password,
        servers.redis_url,
        LOG_LEVEL="debug",
        CARACAL_ADMIN_TOKEN=admin_token,
        ZONE_KEK=zone_kek,
        METRICS_BEARER=bearer,
    )
    api = start_service("api", env, logdir, tag="-secrets")
    services = [api]
    try:
        await asyncio.to_thread(wait_ready, api)
        services += [start_service(kind, env, logdir, tag="-secrets") for kind in ("dispatcher", "reaper")]
        for worker in services[1:]:
            await asyncio.to_thread(worker.wait_logged, f"{worker.name}: poll loop started")
    finally:
        for service in services:
            service.stop()
    kek_hex = KEK.partition(":")[2]
    for service in services:
        log = service.log()
        assert "poll loop started" in log or service is api
        leaked = [
            name
            for name, value in (
                ("database password", password),
                ("admin token", admin_token),
                ("CARACAL_KEK", kek_hex),
                ("STREAMS_HMAC_KEY", HMAC_KEY_HEX),
                ("AUDIT_HMAC_KEY", AUDIT_KEY_HEX),
                ("ZONE_KEK", zone_kek),
                ("METRICS_BEARER", bearer),
            )
            if value in log or value.lower() in log.lower()
        ]
        assert leaked == [], f"{service.name} logged {leaked}"
