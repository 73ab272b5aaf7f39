"""Stream leases: session advisory locks on one dedicated connection, so they die with their holder."""

from __future__ import annotations

import contextlib
import logging
import time

import asyncpg

from caracal.db.engine import plain_url
from caracal.db.locks import STREAM_LEASE_PREFIX

log = logging.getLogger("caracal.dispatcher.leases")

PING_EVERY_S = 1.0
_TRY_LOCK = f"SELECT pg_try_advisory_lock(hashtextextended('{STREAM_LEASE_PREFIX}' || $1, 0))"


class StreamLeases:
    """Which streams this dispatcher publishes; a stream is published by one dispatcher at a time."""

    def __init__(self, database_url: str, statement_timeout_ms: int = 15000) -> None:
        self.url = plain_url(database_url)
        # Delivery marks need no fsync: marks Postgres loses in a crash only mean re-sending, and the
        # stream's high-water mark keeps the repeats out.
        self.server_settings = {
            "application_name": "caracal-dispatcher",
            "statement_timeout": str(statement_timeout_ms),
            "synchronous_commit": "off",
        }
        self.conn: asyncpg.Connection | None = None
        self.held: set[str] = set()
        self.checked_at = 0.0

    async def connection(self) -> asyncpg.Connection:
        """The lease session, checked and reconnected if lost (which drops every lease)."""
        if self.conn is not None and not self.conn.is_closed():
            if time.monotonic() - self.checked_at < PING_EVERY_S:
                return self.conn
            try:
                await self.conn.fetchval("SELECT 1", timeout=5)
                self.checked_at = time.monotonic()
                return self.conn
            except Exception as exc:  # any failure (also the driver's "another operation is in
                # progress" after an interrupted call) leaves the session unusable: start a new one
                log.warning("lease connection lost (%r); leases are gone", exc, exc_info=True)
        await self._drop()
        self.conn = await asyncpg.connect(self.url, timeout=5, server_settings=self.server_settings)
        self.checked_at = time.monotonic()
        return self.conn

    def suspect(self) -> None:
        """After a failed iteration: check the session before it is used again."""
        self.checked_at = 0.0

    async def claim(self, streams: list[str]) -> list[str]:
        """Try to take the streams not held yet; returns the ones newly taken (to reconcile)."""
        conn = await self.connection()
        taken = []
        for stream in streams:
            if stream not in self.held and await conn.fetchval(_TRY_LOCK, stream, timeout=5):
                self.held.add(stream)
                taken.append(stream)
                log.info("lease taken: %s", stream)
        return taken

    async def _drop(self) -> None:
        self.held.clear()
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close(timeout=2)
            self.conn = None

    async def close(self) -> None:
        """Closing the session releases every lease at once."""
        if self.held:
            log.info("releasing leases: %s", ", ".join(sorted(self.held)))
        await self._drop()
