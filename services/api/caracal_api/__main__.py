"""`caracal api`: settings, migrations under the lock, the env token, then serve on every core."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from types import FrameType
from typing import Any, cast

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from caracal.cli import settings_or_exit
from caracal.db.engine import create_engine, transaction
from caracal.db.migrate import run_migrations
from caracal.domain.admin_tokens import seed_env_token
from caracal.domain.providers import providers_hold_secrets
from caracal.settings import Settings
from caracal.telemetry import configure_logging, configure_tracing
from caracal_api.app import build_resources, create_app
from caracal_api.resources import Resources
from caracal_api.supervisor import LISTEN_FD, listening_socket, supervise

log = logging.getLogger("caracal.api")


async def prepare(settings: Settings) -> None:
    """Migrations (once, whatever the number of replicas starting), the ZONE_KEK check, the
    CARACAL_ADMIN_TOKEN seed."""
    engine = create_engine(settings, pool_size=1)
    try:
        await run_migrations(engine)
        await _require_zone_kek(settings, engine)
        if settings.admin_token:
            async with transaction(engine) as conn:
                await seed_env_token(conn, settings.admin_token)
            log.info("CARACAL_ADMIN_TOKEN is a live global token")
    finally:
        await engine.dispose()


async def _require_zone_kek(settings: Settings, engine: AsyncEngine) -> None:
    """Outside dev mode, sealed provider secrets need ZONE_KEK (DESIGN.md "Data at rest")."""
    if settings.dev or settings.zone_kek is not None:
        return
    async with engine.connect() as conn:
        if await providers_hold_secrets(conn):
            print(
                f"caracal: configuration error: ZONE_KEK: required when CARACAL_MODE={settings.mode}"
                " and providers hold sealed secrets (64 hex, the same value the STS is given)",
                file=sys.stderr,
            )
            raise SystemExit(2)


# uvicorn closes an idle keep-alive connection after this long; a proxy in front must give up idle
# connections sooner (deploy/nginx/upstream.conf: 2 s), so the close never races a request it sends
KEEP_ALIVE_S = 5


INTERIM = b"HTTP/1.1 100 "  # `100 Continue`, written before the request body is read: never held


class HeadWithBody:
    """A response's transport: its status line and headers wait for its first body bytes, and both
    go out in one write (uvicorn writes them apart: two send() calls per response, and a loopback
    send is most of a GET's socket time). uvicorn writes a body, empty or not, after every head but
    a HEAD's, so HEAD responses are not held; a held head also goes out if the transport closes."""

    __slots__ = ("held", "started", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.held: bytes | None = None
        self.started = False

    def write(self, data: bytes) -> None:
        if self.held is not None:
            data, self.held = self.held + data, None
        elif not self.started and not data.startswith(INTERIM):
            self.started, self.held = True, data
            return
        self.transport.write(data)

    def close(self) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            self.transport.write(held)
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with three differences.

    Shutdown never closes an idle keep-alive connection: closing it races a request the proxy may be
    sending on it at that moment, and nginx does not resend a POST that met a reset. A draining
    connection answers its next request (if one comes) with `Connection: close` and ends after it; an
    idle one is left for the client to close (the proxy's keep-alive timeout) or for uvicorn's timer.

    Malformed bytes after a request that is being served wait for its answer: uvicorn would answer
    400 and close at once, so a request that committed (a POST) would never get its 201 to the client.

    A response is written once, head and body together (HeadWithBody).
    """

    draining = False
    malformed: str | None = None

    def shutdown(self) -> None:
        self.draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None:
            return
        if cycle.transport is self.transport and cycle.scope["method"] != "HEAD":  # a new cycle
            cycle.transport = cast("asyncio.Transport", HeadWithBody(self.transport))
        if self.draining:
            cycle.keep_alive = False

    def send_400_response(self, msg: str) -> None:
        if self.cycle is None or self.cycle.response_complete:
            super().send_400_response(msg)
            return
        self.malformed = msg
        self.flow.pause_reading()

    def on_response_complete(self) -> None:
        if self.malformed is None:
            super().on_response_complete()
            return
        self.server_state.total_requests += 1
        if not self.transport.is_closing():
            super().send_400_response(self.malformed)


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT, /ready turns 503 `draining` while in-flight requests finish."""

    def __init__(self, config: uvicorn.Config, resources: Resources) -> None:
        super().__init__(config)
        self.resources = resources

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.resources.draining = True
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve what waits in the listening socket's backlog before closing it.

        Closing a listener resets the connections the kernel already queued on it, and nginx has
        sent its request on such a connection, so a POST would not be resent. A worker told to stop
        while it was still starting has accepted nothing yet: its whole backlog would be lost.
        """
        queued = [conn for sock in sockets or [] for conn in _backlog(sock)]
        for server in self.servers:  # no await since the last accept: nothing new is queued meanwhile
            server.close()
        for sock in sockets or []:
            sock.close()
        loop = asyncio.get_running_loop()
        for conn in queued:
            await loop.connect_accepted_socket(self._protocol, conn)
        await super().shutdown(sockets)

    def _protocol(self) -> asyncio.Protocol:
        """The protocol uvicorn's startup gives each accepted connection."""
        return HttpProtocol(config=self.config, server_state=self.server_state, app_state=self.lifespan.state)


def _backlog(sock: socket.socket) -> list[socket.socket]:
    """Every connection queued on the listening socket (it is non-blocking: asyncio made it so)."""
    taken: list[socket.socket] = []
    sock.setblocking(False)
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:  # BlockingIOError: none left; another error: the socket is gone
            return taken
        taken.append(conn)


async def serve(settings: Settings, sock: socket.socket) -> None:
    """One worker: the app on the listening socket until SIGTERM, then drain."""
    resources = build_resources(settings)
    app = create_app(settings, resources)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, settings.shutdown_timeout_ms // 1000),
        lifespan="on",
        server_header=False,
        http=HttpProtocol,
        timeout_keep_alive=KEEP_ALIVE_S,
        # our guard reads X-Forwarded-For itself, only behind TRUST_PROXY: uvicorn must not rewrite
        # the peer from it (by default it trusts loopback clients' headers)
        proxy_headers=False,
    )
    # What start-up built (routes, signatures, SQLAlchemy and Litestar internals) lives as long as the
    # worker: frozen, the collector's full passes stop walking it. Measured with `make bench api`:
    # p99 of GET one zone 84 and 49 ms -> 28 and 32 ms, of a 200-zone page 246 and 235 -> 107 and 106.
    gc.collect()
    gc.freeze()
    # uvicorn re-raises the captured signal after shutdown: let that end main() normally
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    try:
        await DrainingServer(config, resources).serve(sockets=[sock])
    finally:
        await resources.redis.aclose()
        await resources.engine.dispose()


def _run(main: Coroutine[Any, Any, None]) -> None:
    """uvloop when it is installed (it is a dependency), else asyncio's loop."""
    try:
        import uvloop  # noqa: PLC0415

        uvloop.run(main)
    except ImportError:
        asyncio.run(main)
    # Served and drained: what is left is the interpreter's exit, whose collection of every module's
    # objects took seconds for two workers on two busy cores, and a rolling restart waits for it.
    # Frozen objects are not collected; atexit handlers (span export, logging) still run.
    gc.freeze()


def main() -> None:
    settings = settings_or_exit()
    configure_logging(settings.log_level, "api", settings.log_format)
    configure_tracing("api", settings.otel_traces_exporter)
    settings.require_servers()
    inherited = os.environ.get(LISTEN_FD)
    if inherited is not None:  # a worker started by the supervisor below
        _run(serve(settings, socket.socket(fileno=int(inherited))))
        return
    asyncio.run(prepare(settings))
    sock = listening_socket(settings.port)
    log.info("api: listening on 0.0.0.0:%d with %d worker(s)", settings.port, settings.api_workers)
    if settings.api_workers == 1:
        _run(serve(settings, sock))
        return
    raise SystemExit(supervise(settings, sock))


if __name__ == "__main__":
    main()
