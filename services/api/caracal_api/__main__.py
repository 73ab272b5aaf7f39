"""`caracal api`: settings, migrations under the lock, the env token, then serve until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType

import uvicorn

from caracal.cli import settings_or_exit
from caracal.db.engine import create_engine, transaction
from caracal.db.migrate import run_migrations
from caracal.domain.admin_tokens import seed_env_token
from caracal.settings import Settings
from caracal.telemetry import configure_logging, configure_tracing
from caracal_api.app import build_resources, create_app
from caracal_api.resources import Resources

log = logging.getLogger("caracal.api")


async def prepare(settings: Settings) -> None:
    """Migrations (once, whatever the number of replicas starting) and the CARACAL_ADMIN_TOKEN seed."""
    engine = create_engine(settings, pool_size=1)
    try:
        await run_migrations(engine)
        if settings.admin_token:
            async with transaction(engine) as conn:
                await seed_env_token(conn, settings.admin_token)
            log.info("CARACAL_ADMIN_TOKEN is a live global token")
    finally:
        await engine.dispose()


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT, /ready turns 503 `draining` while in-flight requests finish."""

    def __init__(self, config: uvicorn.Config, resources: Resources) -> None:
        super().__init__(config)
        self.resources = resources

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.resources.draining = True
        super().handle_exit(sig, frame)


async def serve(settings: Settings) -> None:
    await prepare(settings)
    resources = build_resources(settings)
    app = create_app(settings, resources)
    config = uvicorn.Config(
        app,
        host="0.0.0.0",  # noqa: S104 - PORT is served on every interface, as the contract says
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, settings.shutdown_timeout_ms // 1000),
        lifespan="on",
        server_header=False,
    )
    # uvicorn re-raises the captured signal after shutdown: let that end main() normally
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    try:
        await DrainingServer(config, resources).serve()
    finally:
        await resources.redis.aclose()
        await resources.engine.dispose()


def main() -> None:
    settings = settings_or_exit()
    configure_logging(settings.log_level, "api")
    configure_tracing("api", settings.otel_traces_exporter)
    settings.require_servers()
    log.info("api: starting on 0.0.0.0:%d", settings.port)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
